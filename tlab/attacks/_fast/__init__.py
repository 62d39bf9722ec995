"""Speed-ups the attacks use: a cheaper attack copy of a model, DSSIM to a fixed source batch."""
