"""The cheaper local model: the packaged int8 MiniLM re-quantized by onnxruntime to compute in int8, built once."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

# int8 weights per output channel and int8 activations (computed per call) in every MatMul with a constant weight;
# the attention-score MatMuls stay float. bench/embedding_cpu.py (2026-12-03, loaded 2-core machine, reference loop
# 4.3-7.9 ms): 0.53x the packaged model's CPU per lone question (4.7 against 8.6 ms), 0.55x per passage in batches
# of 16; cosine with its vectors 0.994 mean / 0.988 min on the dev questions, 0.995 / 0.987 on the demo passages.
# Leaving the feed-forward-down or first and last blocks in float gained ~0.002 of cosine for ~0.1x more CPU.
SETTINGS = {
    "per_channel": True,
    "reduce_range": False,
    "weight_type": "QInt8",
    "op_types": ["MatMul"],
    "extra_options": {"MatMulConstBOnly": True},
}
BLOCKS, MATMULS_PER_BLOCK = 6, 6  # query, key, value, attention out, feed-forward up, feed-forward down


def fold_to_float(source: Path, target: Path) -> None:
    """Write source's graph with its int8 weights (a Cast, then a Mul by a scale) replaced by float initializers."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    drop, folded = set(), []
    for cast in [n for n in graph.node if n.op_type == "Cast" and n.input[0] in inits]:
        users = consumers.get(cast.output[0], [])
        if len(users) != 1 or users[0].op_type != "Mul":
            continue
        mul = users[0]
        scale = next((name for name in mul.input if name != cast.output[0]), None)
        if scale not in inits:
            continue
        weight = numpy_helper.to_array(inits[cast.input[0]]).astype(np.float32) * numpy_helper.to_array(inits[scale])
        folded.append(numpy_helper.from_array(weight.astype(np.float32), mul.output[0]))
        drop |= {cast.input[0], scale}
        graph.node.remove(cast)
        graph.node.remove(mul)
    kept = [i for i in graph.initializer if i.name not in drop]
    del graph.initializer[:]
    graph.initializer.extend(kept + folded)
    onnx.save(model, str(target))


def weight_matmuls(model_path: Path) -> list[str]:
    """Names of the MatMuls with a constant weight, in graph order (MATMULS_PER_BLOCK a block)."""
    import onnx

    graph = onnx.load(str(model_path)).graph
    inits = {i.name for i in graph.initializer}
    names = [n.name for n in graph.node if n.op_type == "MatMul" and n.input[1] in inits]
    if len(names) != BLOCKS * MATMULS_PER_BLOCK:
        raise ValueError(f"expected {BLOCKS * MATMULS_PER_BLOCK} weight MatMuls in MiniLM-L6, found {len(names)}")
    return names


def quantize(float_model: Path, target: Path, settings: dict, exclude: list[str] = ()) -> None:
    """onnxruntime's dynamic quantization of float_model with settings (keys as in SETTINGS)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        float_model,
        target,
        per_channel=settings["per_channel"],
        reduce_range=settings["reduce_range"],
        weight_type=QuantType[settings["weight_type"]],
        op_types_to_quantize=settings["op_types"],
        nodes_to_exclude=list(exclude),
        extra_options=dict(settings["extra_options"]),
    )


def cached_name(packaged: Path, settings: dict = SETTINGS) -> str:
    """The derived model's file name: a hash of the packaged model, the settings and the quantizer's version."""
    import onnxruntime

    digest = hashlib.sha256(packaged.read_bytes())
    digest.update(json.dumps(settings, sort_keys=True).encode())
    digest.update(onnxruntime.__version__.encode())
    return f"minilm-l6-int8q-{digest.hexdigest()[:16]}.onnx"


def quantized_model(packaged: Path, cache_dir: Path) -> Path:
    """The derived model under cache_dir, built on first use; concurrent processes wait on a lock, and the file only
    appears complete (written aside, then renamed)."""
    target = cache_dir / cached_name(packaged)
    if target.is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(target.with_suffix(".lock"), "w") as lock:
        _lock(lock)
        if target.is_file():  # another process built it while this one waited
            return target
        scratch = cache_dir / f".{target.stem}.{os.getpid()}"
        folded, quantized = scratch.with_suffix(".float.onnx"), scratch.with_suffix(".onnx")
        try:
            fold_to_float(packaged, folded)
            quantize(folded, quantized, SETTINGS)
            os.replace(quantized, target)
        finally:
            for path in (folded, quantized):
                path.unlink(missing_ok=True)
    return target


def _lock(handle) -> None:
    """Block until this process holds an exclusive lock on the open file (released when it is closed)."""
    try:
        import fcntl
    except ImportError:  # Windows: the atomic rename alone keeps the file whole; builders may duplicate work
        return
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
