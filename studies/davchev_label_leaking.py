"""Study: does longer FGSM adversarial training make tlab's networks leak labels (claim D2)?

Davchev et al. 2019, Sec. 2.3, after Kurakin et al. 2017: a network FGSM-trained with the *true*
labels can score higher on true-label FGSM examples than on clean images (or far above
predicted-label FGSM), because the perturbation carries the label. Notebook 07 tests this as
claim D2 on ``R_fgsm (true labels)`` -- trained on the target domain only -- and at the standard
preset it does not hold. This script asks whether a longer training budget changes that: it
retrains that network with ``--epochs`` (each a separate zoo entry of the standard recipe with
only ``target_epochs`` changed) for every seed and prints clean / FGSM true labels / FGSM
predicted labels / PGD accuracy on all evaluation images
(``tlab.papers.davchev.label_leaking``), plus
the clean error rate, which bounds the true-minus-predicted gap: on an image the network
classifies correctly both labels are the same, so both FGSM examples are too.

    python studies/davchev_label_leaking.py                       # standard, 3/6/15/30 epochs
    python studies/davchev_label_leaking.py --epochs 3 60 --seeds 0
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from tlab.papers import davchev


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="standard", choices=["quick", "standard"])
    parser.add_argument("--epochs", type=int, nargs="+", default=[3, 6, 15, 30])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    base = davchev.setup(args.preset)
    network = davchev.Network("fgsm", fgsm_labels="true")
    print(
        f"{network.label(base.depth)} on {base.target_domain} ({base.target_n} images, batch "
        f"{base.batch_size}), eps {base.eps * 255:.0f}/255, accuracy on all "
        f"{base.eval_n} evaluation images"
    )
    print(
        f"{'epochs':>6} {'seed':>4} {'clean':>6} {'FGSM-true':>9} {'FGSM-pred':>9} "
        f"{'true-pred':>9} {'error':>6} {'PGD':>6} {'seconds':>7}"
    )
    for epochs in args.epochs:
        s = dataclasses.replace(base, target_epochs=epochs)
        for seed in args.seeds:
            start = time.perf_counter()
            r = davchev.label_leaking(davchev.network_spec(s, network, seed), s)
            gap = r["fgsm_true_labels"] - r["fgsm_predicted_labels"]
            print(
                f"{epochs:6d} {seed:4d} {100 * r['clean']:6.1f} "
                f"{100 * r['fgsm_true_labels']:9.1f} {100 * r['fgsm_predicted_labels']:9.1f} "
                f"{100 * gap:+9.1f} {100 * (1 - r['clean']):6.1f} "
                f"{100 * r['pgd_true_labels']:6.1f} {time.perf_counter() - start:7.1f}"
            )


if __name__ == "__main__":
    main()
