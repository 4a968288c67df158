"""Peer update benchmark: URLB's PyTorch Proto agent (``agent/proto.py``) on random
state batches.

Runs inside its own virtual environment (benchmarks/.venvs/urlb, built by
``bash benchmarks/peers/build_venvs.sh urlb`` from requirements-urlb.txt), never inside
purerl's. URLB is not a package: its agent files are loaded, unedited, from a directory
the caller names. Usage:

    benchmarks/.venvs/urlb/bin/python benchmarks/peers/urlb_proto.py \
        --urlb-path DIR --obs-dim 5 --action-dim 1 --batch-size 256 --hidden-dim 256

DIR holds ``agent/proto.py``, ``agent/ddpg.py`` and ``utils.py`` from repository
github.com/rll-research/url_benchmark at commit bb98f0c
(bb98f0c6d78b3c467fb5a9fa5bbba3b7c0250397), for example

    mkdir -p DIR/agent
    for f in agent/proto.py agent/ddpg.py utils.py; do git show bb98f0c:$f > DIR/$f; done

None of them is copied into this repository. DIR goes first on ``sys.path`` (proto.py
does ``import utils`` and ``from agent.ddpg import DDPGAgent``); the three files' git
blob ids are checked against bb98f0c's, and a mismatch is reported in ``notes`` (the run
still goes ahead).

What is timed: ``ProtoAgent.update(replay_iter, step)`` in reward-free pre-training
(``reward_free=True``), the call URLB's ``pretrain.py`` makes every env step. With an
even ``step`` (``update_every_steps = 2``) one call is one full update: the prototype
loss and its Adam step (encoder, predictor, projector, prototypes), the intrinsic reward
(queue enqueue and the k-th-neighbour distance), DDPG's critic step and actor step, and
the three soft target updates. ``replay_iter`` cycles over pre-built numpy batches
``(obs, action, reward, discount, next_obs)`` so no sampling is timed (URLB samples on
worker processes). ``obs_type="states"``: URLB's encoder is then the identity, its
networks are the actor (Linear -> LayerNorm -> tanh of ``hidden_dim``, one ReLU layer
of ``hidden_dim``, the action) and a twin critic behind a shared LayerNorm trunk.
Hyperparameters are proto.yaml's (lr 1e-4, tau 0.1, topk 3, encoder_target_tau 0.05,
critic_target_tau 0.01, stddev 0.2, clip 0.3) except the sizes the flags set.

Torch runs with its default intra-op threads (reported). ``--warmup`` calls run first;
then ``--repeats`` rounds of ``--updates`` calls each are timed, and the median round is
reported. The last line on stdout is one JSON object.
"""

import argparse
import hashlib
import json
import os
import resource
import sys
import time

COMMIT = "bb98f0c6d78b3c467fb5a9fa5bbba3b7c0250397"
# git blob ids at COMMIT (`git rev-parse bb98f0c:<file>`).
BLOBS = {"agent/proto.py": "8598169082f9cec3627e2fb1c480f7df7ae894c0",
         "agent/ddpg.py": "2b8993a579b0d7f72c6988e4ad3a4cc19a95af40",
         "utils.py": "9086ee56515710edfcfc373a8300caaa0d57fb88"}


def blob_id(path):
    with open(path, "rb") as f:
        data = f.read()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--urlb-path", required=True)
    p.add_argument("--obs-dim", type=int, default=5)
    p.add_argument("--action-dim", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--hidden-dim", type=int, default=1024)
    p.add_argument("--num-protos", type=int, default=512)
    p.add_argument("--queue-size", type=int, default=2048)
    p.add_argument("--pred-dim", type=int, default=128)
    p.add_argument("--proj-dim", type=int, default=512)
    p.add_argument("--updates", type=int, default=100)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    root = os.path.abspath(args.urlb_path)
    missing = [f for f in BLOBS if not os.path.isfile(os.path.join(root, f))]
    if missing:
        sys.exit(f"urlb_proto.py: --urlb-path {root} lacks {', '.join(missing)} "
                 f"(see this script's docstring for how to get them)")
    notes = [f"{f} differs from {COMMIT[:7]}" for f, b in BLOBS.items()
             if blob_id(os.path.join(root, f)) != b]
    sys.path.insert(0, root)

    import numpy as np
    import torch
    from agent.proto import ProtoAgent

    torch.manual_seed(args.seed)
    agent = ProtoAgent(
        name="proto", reward_free=True, obs_type="states", obs_shape=(args.obs_dim,),
        action_shape=(args.action_dim,), device="cpu", lr=1e-4, feature_dim=50,
        hidden_dim=args.hidden_dim, critic_target_tau=0.01, num_expl_steps=0,
        update_every_steps=2, stddev_schedule=0.2, nstep=3, batch_size=args.batch_size,
        stddev_clip=0.3, init_critic=True, use_tb=False, use_wandb=False,
        pred_dim=args.pred_dim, proj_dim=args.proj_dim, queue_size=args.queue_size,
        num_protos=args.num_protos, tau=0.1, encoder_target_tau=0.05, topk=3,
        update_encoder=True)

    rng = np.random.default_rng(args.seed)
    B, f32 = args.batch_size, np.float32
    batches = [(rng.standard_normal((B, args.obs_dim)).astype(f32),
                rng.uniform(-1, 1, (B, args.action_dim)).astype(f32),
                np.zeros((B, 1), f32), np.full((B, 1), 0.99, f32),
                rng.standard_normal((B, args.obs_dim)).astype(f32)) for _ in range(8)]

    def replay():
        while True:
            yield from batches

    replay_iter, step = replay(), 0
    for _ in range(args.warmup):
        agent.update(replay_iter, step)
        step += 2
    walls = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        for _ in range(args.updates):
            agent.update(replay_iter, step)
            step += 2
        walls.append(time.perf_counter() - t0)
    wall = sorted(walls)[(len(walls) - 1) // 2]
    print(json.dumps({
        "framework": "urlb", "version": f"url_benchmark@{COMMIT[:7]}"
        + (" (modified)" if notes else ""), "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(), "updates_per_second": args.updates / wall,
        "walls": walls, "updates": args.updates, "config": vars(args), "notes": notes,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
