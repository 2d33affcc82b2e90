"""Sample quality of a GAN recipe per epoch: classifier IS and FID, class coverage and confidence.

    python benchmarks/gan_quality_probe.py --epochs 5                 # unconditional DCGAN
    python benchmarks/gan_quality_probe.py --clusters 100 --epochs 5  # self-conditioned on pixel clusters
    python benchmarks/gan_quality_probe.py --labels --epochs 3        # conditional on the digit labels
    python benchmarks/gan_quality_probe.py --dense --epochs 20        # article C's dense GAN, repaired

Notebook 03's networks and scoring (its saved notebook-01 classifier, temperature-calibrated
on the 5,000 held-out digits), but 5,000 samples per epoch scored against the *held-out*
digits, and per-epoch diagnostics the notebook does not print: the perplexity of the
predicted-class histogram (10 = every class equally often) and the mean top probability.
Results are recorded in gan_step.md.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from flax import nnx

from imgmine_jax import classifier, data, gan, metrics, recipes, train


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--clusters", type=int, default=0, help="self-condition on this many pixel k-means clusters")
    p.add_argument("--labels", action="store_true", help="condition on the digit labels")
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--d-width", type=int, default=64)
    p.add_argument("--samples", type=int, default=5000)
    p.add_argument("--dense", action="store_true", help="article C's dense GAN (latent 100, Dense 128)")
    p.add_argument("--ema-decay", type=float, default=None, help="generator weight averaging (default: the "
                   "task's; 0 for none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-size", type=int, default=None, help="train on the first N images (a smoke test)")
    args = p.parse_args()
    if args.labels and args.clusters:
        p.error("--labels and --clusters are alternatives")
    if args.dense and (args.labels or args.clusters):
        p.error("the dense GAN is unconditional")

    train_set, holdout = data.train_val_split(data.load("mnist", "train"), 5000, seed=args.seed)
    train_set = train_set.head(args.train_size)
    net, _ = classifier.load_or_train("mnist", seed=args.seed)
    scorer = gan.ClassifierScorer(net)
    feats, logits = scorer.outputs(holdout.images)
    scorer.calibrate(holdout.images, holdout.labels, logits=logits)
    reference = metrics.feature_statistics(feats)

    labels, num_classes = None, 0
    if args.clusters:
        labels, num_classes = gan.pixel_clusters(train_set.images, args.clusters, seed=args.seed), args.clusters
        print(f"{args.clusters} pixel clusters, purity {metrics.purity(train_set.labels, labels):.3f}")
    elif args.labels:
        labels, num_classes = train_set.labels, train_set.num_classes
    if args.dense:
        model = gan.GAN(**recipes.ARTICLE_GAN_ARCH, rngs=nnx.Rngs(args.seed))
    else:
        model = gan.GAN(latent_dim=64, width=args.width, d_width=args.d_width, dropout=0.0,
                        upsample="depth_to_space", num_classes=num_classes, rngs=nnx.Rngs(args.seed))
    latent_dim = model.latent_dim
    ema = {} if args.ema_decay is None else {"ema_decay": args.ema_decay}
    task = gan.GANTask(latent_dim=latent_dim, conditional=num_classes > 0, **ema)
    z = gan.latents(args.seed + 11, args.samples, latent_dim)
    sample_labels = None if labels is None else gan.draw_labels(labels, args.samples, args.seed + 11, num_classes)
    sampler = gan.Sampler(model.generator_ema)

    def scores(trainer):
        s = scorer.score(sampler(gan.generator_state(trainer.model_state), z, sample_labels), reference)
        hist = np.bincount(s["predictions"], minlength=10) / args.samples
        out = {"fid": s["fid"], "is": s["is"], "class_perplexity": float(np.exp(-np.sum(hist * np.log(hist + 1e-12)))),
               "confidence": float(s["confidence"].mean())}
        print(f"step {trainer.step} ({time.perf_counter() - start:.0f} s): "
              + ", ".join(f"{k} {v:.4f}" for k, v in out.items()), flush=True)
        return out

    arrays = train_set.arrays() if labels is None else {"image": train_set.images, "label": labels}
    cfg = train.TrainConfig(epochs=args.epochs, batch_size=32, learning_rate=2e-4, schedule="constant",
                            warmup_epochs=0.0, weight_decay=0.0, seed=args.seed)
    start = time.perf_counter()
    train.fit(model, task, arrays, None, cfg, monitor=None, epoch_metrics=scores, progress=False)


if __name__ == "__main__":
    main()
