"""Defenses against the attacks on transfer learning (Wang et al., Sec. 6)."""
