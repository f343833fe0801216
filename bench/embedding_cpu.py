"""CPU per text of the local embedding model: today's packaged int8 MiniLM against onnxruntime variants of it.

Usage: .venv/bin/python bench/embedding_cpu.py [--rounds 5] [--queries 100] [--passages 128] [--variants a,b] [--sweep]

Every variant is derived from the packaged model.onnx into a scratch folder, then the variants are timed in rounds
that take turns (the order rotates each round), so a change in the machine's speed affects them alike: CPU
(time.process_time, every onnxruntime thread counted) per visitor question embedded alone (batch of 1) and per
passage of knowledge/docs embedded in batches of 16 (ingestion). Each variant's vectors are compared with today's on
every question of evals/answers_dev.jsonl and every passage of knowledge/docs: mean and min cosine. --sweep also
times nothing but prints the cosine of quantizing everything except one kind of layer (or one block), to find the
layers whose quantization costs the most accuracy.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from harness import REPO, header, reference_ms

sys.path.insert(0, str(REPO))

from app.embeddings import LocalMiniLMEmbeddings, _model_files, session_options  # noqa: E402
from app.kb.documents import load_folder  # noqa: E402
from app.quantized import BLOCKS, MATMULS_PER_BLOCK, SETTINGS, fold_to_float, quantize, weight_matmuls  # noqa: E402

ROLES = ("query", "key", "value", "attention-out", "ffn-up", "ffn-down")


def questions() -> list[str]:
    """The visitor questions of the answers dev set."""
    lines = (REPO / "evals" / "answers_dev.jsonl").read_text().splitlines()
    return [json.loads(line)["question"] for line in lines if line.strip()]


def passages() -> list[str]:
    """What ingestion embeds for the demo knowledge base."""
    docs, _ = load_folder(REPO / "knowledge" / "docs")
    return [p.embedding_text() for doc in docs for p in doc.passages()]


class Variant:
    """A model file and how its session is built."""

    def __init__(self, name: str, path: Path, tweak: Callable | None = None) -> None:
        self.name, self.path, self.tweak = name, path, tweak

    def load(self, threads: int) -> LocalMiniLMEmbeddings:
        import onnxruntime as ort

        model = LocalMiniLMEmbeddings(threads, model_path=self.path)
        if self.tweak:
            options = session_options(threads)
            self.tweak(options)
            model._session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        return model


def build_variants(scratch: Path, wanted: list[str]) -> list[Variant]:
    """Derive every variant of the packaged model into scratch."""
    import onnxruntime as ort

    packaged, _ = _model_files()
    folded = scratch / "float.onnx"
    fold_to_float(packaged, folded)
    matmuls = weight_matmuls(folded)
    by_role = {role: matmuls[r::MATMULS_PER_BLOCK] for r, role in enumerate(ROLES)}
    block = [matmuls[MATMULS_PER_BLOCK * b : MATMULS_PER_BLOCK * (b + 1)] for b in range(BLOCKS)]

    def extended(options) -> None:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED

    def saved(options) -> None:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL

    recipes: dict[str, tuple[str, dict | None, Callable | None]] = {
        "today": ("packaged", None, None),
        "opt-extended": ("packaged", None, extended),
        "opt-all-saved": ("saved", None, saved),
        "float-folded": ("float", None, None),
        "dyn-default": ("quant", {"per_channel": False, "op_types": None, "extra_options": {}}, None),
        "dyn-pc": ("quant", {}, None),  # app/quantized.py SETTINGS: what JOURNEY_EMBEDDING_MODEL=local runs
        "dyn-pc-reduce": ("quant", {"reduce_range": True}, None),
        "dyn-pc-quint8": ("quant", {"weight_type": "QUInt8"}, None),
        "dyn-pc-no-ffn-down": ("quant", {"exclude": by_role["ffn-down"]}, None),
        "dyn-pc-no-ffn": ("quant", {"exclude": by_role["ffn-up"] + by_role["ffn-down"]}, None),
        "dyn-pc-no-attn-out": ("quant", {"exclude": by_role["attention-out"]}, None),
        "dyn-pc-no-first-last": ("quant", {"exclude": block[0] + block[-1]}, None),
        "dyn-pc-no-first": ("quant", {"exclude": block[0]}, None),
    }
    variants = []
    for name in wanted:
        kind, settings, tweak = recipes[name]
        if kind == "packaged":
            variants.append(Variant(name, packaged, tweak))
        elif kind == "float":
            variants.append(Variant(name, folded, tweak))
        elif kind == "saved":
            target = scratch / f"{name}.onnx"
            options = session_options(1)
            options.optimized_model_filepath = str(target)
            ort.InferenceSession(str(packaged), options, providers=["CPUExecutionProvider"])
            variants.append(Variant(name, target, tweak))
        else:
            settings = SETTINGS | settings
            target = scratch / f"{name}.onnx"
            quantize(folded, target, settings, settings.pop("exclude", []))
            variants.append(Variant(name, target, tweak))
    return variants


def cosines(model: LocalMiniLMEmbeddings, texts: list[str], reference: np.ndarray) -> np.ndarray:
    """Cosine of each text's vector with today's (both are unit length)."""
    return (model.embed_array(texts) * reference).sum(axis=1)


def sweep(scratch: Path, texts: list[str], reference: np.ndarray, threads: int) -> None:
    """Cosine against today's when one kind of layer (or one block) is left in float and the rest is quantized."""
    folded = scratch / "float.onnx"
    if not folded.exists():
        fold_to_float(_model_files()[0], folded)
    matmuls = weight_matmuls(folded)
    groups: dict[str, list[str]] = {"none": []}
    groups |= {f"role {role}": matmuls[r::MATMULS_PER_BLOCK] for r, role in enumerate(ROLES)}
    groups |= {f"block {b}": matmuls[MATMULS_PER_BLOCK * b : MATMULS_PER_BLOCK * (b + 1)] for b in range(BLOCKS)}
    print("\nleft in float (the rest quantized per channel)  mean cos  min cos")
    for label, exclude in groups.items():
        target = scratch / "sweep.onnx"
        quantize(folded, target, SETTINGS, exclude)
        found = cosines(Variant(label, target).load(threads), texts, reference)
        print(f"{label:<48} {found.mean():.4f}   {found.min():.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--queries", type=int, default=100, help="questions embedded one at a time per round")
    parser.add_argument("--passages", type=int, default=128, help="passages embedded in batches of 16 per round")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime threads (JOURNEY_EMBEDDING_THREADS)")
    parser.add_argument(
        "--variants",
        default="today,opt-extended,opt-all-saved,float-folded,dyn-default,dyn-pc,"
        "dyn-pc-reduce,dyn-pc-quint8,dyn-pc-no-ffn-down,dyn-pc-no-ffn,dyn-pc-no-attn-out,dyn-pc-no-first-last,"
        "dyn-pc-no-first",
    )
    parser.add_argument("--sweep", action="store_true", help="print the per-layer sensitivity sweep instead")
    args = parser.parse_args()
    header("CPU per text of the local embedding model, variants of the packaged int8 MiniLM")
    asked, stored = questions(), passages()
    print(f"texts: {len(asked)} questions (evals/answers_dev.jsonl), {len(stored)} passages (knowledge/docs)")
    with tempfile.TemporaryDirectory() as scratch:
        names = args.variants.split(",")
        if names[0] != "today":
            names.insert(0, "today")
        variants = build_variants(Path(scratch), names)
        models = {v.name: v.load(args.threads) for v in variants}
        today = models["today"]
        reference_q, reference_p = today.embed_array(asked), today.embed_array(stored)
        if args.sweep:
            sweep(Path(scratch), asked + stored, np.vstack([reference_q, reference_p]), args.threads)
            return
        similarity = {
            name: (cosines(m, asked, reference_q), cosines(m, stored, reference_p)) for name, m in models.items()
        }
        single: dict[str, list[float]] = {name: [] for name in models}
        batched: dict[str, list[float]] = {name: [] for name in models}
        timed = asked[: args.queries]
        batch_texts = stored[: 16 * (min(args.passages, len(stored)) // 16)]
        order = list(models.items())
        speeds = []
        for n in range(args.rounds):
            speeds.append(reference_ms())
            for name, model in order[n % len(order) :] + order[: n % len(order)]:
                started = time.process_time()
                for text in timed:
                    model.embed_query(text)
                single[name].append((time.process_time() - started) * 1000 / len(timed))
                started = time.process_time()
                for first in range(0, len(batch_texts), 16):
                    model.embed_array(batch_texts[first : first + 16])
                batched[name].append((time.process_time() - started) * 1000 / len(batch_texts))
        print(f"machine speed per round: {', '.join(f'{s:.1f}' for s in speeds)} ms for the reference loop")
        print(f"{args.rounds} rounds, {args.threads} onnxruntime threads; CPU ms per text (median of rounds), ratio to")
        print("today's (median of the per-round ratios); cosine with today's vectors: questions | passages\n")
        print(
            f"{'variant':<22} {'1 question':>10} {'ratio':>6} {'16 passages':>11} {'ratio':>6}"
            f"  {'q mean':>6} {'q min':>6}  {'p mean':>6} {'p min':>6}"
        )
        for name in models:
            ratio_1 = statistics.median(a / b for a, b in zip(single[name], single["today"], strict=True))
            ratio_16 = statistics.median(a / b for a, b in zip(batched[name], batched["today"], strict=True))
            cos_q, cos_p = similarity[name]
            print(
                f"{name:<22} {statistics.median(single[name]):>10.2f} {ratio_1:>6.2f}"
                f" {statistics.median(batched[name]):>11.2f} {ratio_16:>6.2f}"
                f"  {cos_q.mean():>6.4f} {cos_q.min():>6.4f}  {cos_p.mean():>6.4f} {cos_p.min():>6.4f}"
            )


if __name__ == "__main__":
    main()
