"""The selfheal model: a frozen backbone and head, with a small trainable adapter between.

    x ─ calibrate ─ standardise ─ z ─ backbone ─ h ─ ReflexiveLayer ─ h' ─ head ─ + offset ─ logit
        (x-shift)/scale                (frozen)     h + scale·adapter(h, z)  (frozen)

The backbone and head are trained once on clean data and never change again; healing
moves only the adapter state: the ReflexiveLayer (8,961 parameters at the default sizes),
a per-feature input calibration and a logit offset. The adapter sees the standardised
inputs ``z`` beside the hidden units, through an input path that is zero until a heal moves
it: what the backbone learned to ignore before a drift (a feature that did not matter then)
a heal can still bring in. The calibration undoes a unit change
upstream and the offset a change of the fraud rate; both start as the identity and are
what label-free healing sets (:mod:`shared.labelfree`). The adapter state is read and
written on its own, as safetensors bytes, so it can travel on its own.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from shared.errors import WeightsError

AdapterState = dict[str, torch.Tensor]


@dataclass(frozen=True)
class ModelConfig:
    n_features: int = 10  # input width: one column per schema feature
    hidden: int = 64  # backbone width; the adapter maps hidden -> hidden
    adapter_hidden: int = 64  # the adapter's inner width
    adapter_scale: float = 0.1  # initial value of the learnable residual scale

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelConfig:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


CALIBRATION_KEYS = ("input_scale", "input_shift", "logit_offset")


class InputPath(nn.Module):
    """The adapter's view of the standardised inputs: ``weight`` (inner, n_features), zero at
    the start (made without drawing from the random generator, so a bundle trains exactly as
    it did before the path existed)."""

    def __init__(self, n_features: int, inner: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(inner, n_features))


class ReflexiveLayer(nn.Module):
    """Residual adapter ``h + scale * adapter(h, z)``: ``W2 tanh(W1 h + Win z + b1) + b2``,
    where ``z`` is the standardised input and ``Win`` (``input_path``) starts at zero; with
    the adapter state's calibration: ``input_scale``/``input_shift`` (raw feature units,
    identity 1/0) and ``logit_offset``. Gradient steps move the residual path only; the
    calibration is set, not trained.

    ``decision_shift`` is added to every logit after all that. A labelled heal's candidate
    is calibrated on its labels, and a calibrated model decides best at the cost matrix's
    Bayes threshold, while the scorer compares every score with the bundle's threshold
    (chosen for the frozen model's own scale, often far from Bayes): the shift
    ``logit(threshold) - logit(bayes)`` makes the one decide as the other. 0: the bundle's
    scale (the bundle's adapter, a label-free calibration)."""

    input_scale: torch.Tensor
    input_shift: torch.Tensor
    logit_offset: torch.Tensor
    decision_shift: torch.Tensor

    def __init__(self, dim: int, inner: int, scale: float, n_features: int) -> None:
        super().__init__()
        self.adapter = nn.Sequential(nn.Linear(dim, inner), nn.Tanh(), nn.Linear(inner, dim))
        self.input_path = InputPath(n_features, inner)
        self.scale = nn.Parameter(torch.tensor(float(scale)))
        self.register_buffer("input_scale", torch.ones(n_features))
        self.register_buffer("input_shift", torch.zeros(n_features))
        self.register_buffer("logit_offset", torch.zeros(()))
        self.register_buffer("decision_shift", torch.zeros(()))

    def calibrate(self, x: torch.Tensor) -> torch.Tensor:
        """Raw features in today's units -> the training's units."""
        if not self.calibrated:
            return x
        return (x - self.input_shift) / self.input_scale

    def tensors(self) -> tuple[torch.Tensor, ...]:
        """(w1, b1, w2, b2, scale, offset, w_in): what :func:`adapted_logits` runs; ``offset``
        is the logit offset plus the decision shift."""
        first, last = self.adapter[0], self.adapter[2]
        assert isinstance(first, nn.Linear) and isinstance(last, nn.Linear)
        w_in = self.input_path.weight
        offset = self.logit_offset + self.decision_shift
        return first.weight, first.bias, last.weight, last.bias, self.scale, offset, w_in

    @property
    def calibrated(self) -> bool:
        """True when the input calibration is not the identity."""
        return bool((self.input_scale != 1).any() or (self.input_shift != 0).any())


def frozen_parts(x: torch.Tensor, base: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Standardise, then the backbone, as the plain operations its modules run (``F.linear``
    is what ``nn.Linear`` calls): ``base`` is (mean, std, w1, b1, w2, b2, head w, head b).
    Returns the hidden units (N, hidden) and the standardised inputs (N, n_features)."""
    mean, std, w1, b1, w2, b2 = base[:6]
    z = (x - mean) / std
    return torch.relu(F.linear(torch.relu(F.linear(z, w1, b1)), w2, b2)), z


def frozen_hidden(x: torch.Tensor, base: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """What the adapter sees, in one tensor (a heal computes it once and trains on it): the
    hidden units and the standardised inputs side by side, (N, hidden + n_features)."""
    return torch.cat(frozen_parts(x, base), dim=1)


def adapted_logits(
    hz: torch.Tensor, adapter: tuple[torch.Tensor, ...], base: tuple[torch.Tensor, ...]
) -> torch.Tensor:
    """:func:`logits_of_parts` on ``hz`` from :func:`frozen_hidden`."""
    width = adapter[2].shape[0]
    return logits_of_parts(hz[:, :width], hz[:, width:], adapter, base)


def logits_of_parts(
    h: torch.Tensor, z: torch.Tensor | None, adapter: tuple[torch.Tensor, ...], base: tuple[torch.Tensor, ...]
) -> torch.Tensor:
    """``h + scale·adapter(h, z)``, the head, the logit offset: ``adapter`` is (w1, b1, w2,
    b2, scale, logit_offset, w_in) (:meth:`ReflexiveLayer.tensors`). ``z`` None: the input
    path is zero (the scorer skips it then; the same numbers)."""
    w1, b1, w2, b2, scale, offset, w_in = adapter
    pre = F.linear(h, w1, b1) if z is None else torch.addmm(F.linear(h, w1, b1), z, w_in.t())
    adapted = h + scale * F.linear(torch.tanh(pre), w2, b2)
    return F.linear(adapted, base[6], base[7]).squeeze(-1) + offset


class SelfHealingModel(nn.Module):
    """Standardise, backbone, ReflexiveLayer, head; ``forward`` returns logits of shape (N,)."""

    input_mean: torch.Tensor
    input_std: torch.Tensor

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        d, h = config.n_features, config.hidden
        # Input standardisation: part of the frozen base, set from training statistics.
        self.register_buffer("input_mean", torch.zeros(d))
        self.register_buffer("input_std", torch.ones(d))
        self.backbone = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU())
        self.reflexive = ReflexiveLayer(h, config.adapter_hidden, config.adapter_scale, d)
        self.head = nn.Linear(h, 1)

    # -- forward pieces, so a caller can run the frozen part once and adapters many times
    def base_tensors(self) -> tuple[torch.Tensor, ...]:
        """(mean, std, w1, b1, w2, b2, head w, head b): the frozen part, for :func:`frozen_hidden`."""
        first, second = self.backbone[0], self.backbone[2]
        assert isinstance(first, nn.Linear) and isinstance(second, nn.Linear)
        return (
            self.input_mean, self.input_std, first.weight, first.bias,
            second.weight, second.bias, self.head.weight, self.head.bias,
        )  # fmt: skip

    def hidden(self, x: torch.Tensor, layer: ReflexiveLayer | None = None) -> torch.Tensor:
        """The frozen part, on ``x`` calibrated by ``layer`` (default: our own adapter): the
        hidden units and the standardised inputs, (N, hidden + n_features)."""
        x = (self.reflexive if layer is None else layer).calibrate(x)
        return frozen_hidden(x, self.base_tensors())

    def logits_from_hidden(self, h: torch.Tensor, layer: ReflexiveLayer | None = None) -> torch.Tensor:
        adapter = self.reflexive if layer is None else layer
        return adapted_logits(h, adapter.tensors(), self.base_tensors())  # (N,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits_from_hidden(self.hidden(x))

    def logits(self, x: torch.Tensor, layer: ReflexiveLayer | None = None) -> torch.Tensor:
        """Logits of raw rows through ``layer`` (default: our own adapter), calibration included."""
        return self.logits_from_hidden(self.hidden(x, layer), layer)

    # -- freezing
    def freeze_base(self) -> list[nn.Parameter]:
        """Freeze backbone and head; return the adapter parameters (the only trainable ones)."""
        for p in self.base_parameters():
            p.requires_grad_(False)
        return [p for p in self.reflexive.parameters() if p.requires_grad]

    def trained_with_base(self) -> list[nn.Parameter]:
        """What a bundle's training moves: everything but the adapter's input path, which
        stays zero until a heal moves it."""
        skip = {id(p) for p in self.reflexive.input_path.parameters()}
        return [p for p in self.parameters() if p.requires_grad and id(p) not in skip]

    def base_parameters(self) -> Iterator[nn.Parameter]:
        yield from self.backbone.parameters()
        yield from self.head.parameters()

    # -- state in pieces
    def adapter_state(self) -> AdapterState:
        return {k: v.detach().clone() for k, v in self.reflexive.state_dict().items()}

    def load_adapter(self, state: Mapping[str, torch.Tensor]) -> None:
        state = with_calibration(state, self.config)
        check_adapter(state, self.config)
        self.reflexive.load_state_dict(dict(state))

    def base_state(self) -> dict[str, torch.Tensor]:
        sd = self.state_dict()
        return {k: v.detach().clone() for k, v in sd.items() if not k.startswith("reflexive.")}

    def load_base(self, state: Mapping[str, torch.Tensor]) -> None:
        missing, unexpected = self.load_state_dict(dict(state), strict=False)
        missing = [k for k in missing if not k.startswith("reflexive.")]
        if missing or unexpected:
            raise WeightsError(f"base weights do not fit: missing {missing}, unexpected {unexpected}")

    @torch.no_grad()
    def shift_logit(self, layer: ReflexiveLayer, delta: float) -> None:
        """Add ``delta`` to every logit the model computes through ``layer``, exactly, by moving
        the adapter's output bias along the head's weight (where a labelled heal's next steps
        can still move it; the ``logit_offset`` buffer is label-free healing's)."""
        w = self.head.weight.detach().reshape(-1)
        scale = float(layer.scale)
        if abs(scale) < 1e-6 or float(w @ w) == 0.0:
            layer.logit_offset.add_(delta)
            return
        out = layer.adapter[2]
        assert isinstance(out, nn.Linear)
        out.bias.add_(delta * w / (scale * float(w @ w)))

    def new_adapter(self, state: Mapping[str, torch.Tensor] | None = None) -> ReflexiveLayer:
        """A detached ReflexiveLayer of the right shape, loaded with ``state`` (or a copy of ours)."""
        c = self.config
        layer = ReflexiveLayer(c.hidden, c.adapter_hidden, 0.0, c.n_features)
        layer.load_state_dict(with_calibration(state, c) if state is not None else self.adapter_state())
        return layer

    @torch.inference_mode()
    def predict_proba(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        """Fraud probabilities for a (N, n_features) array."""
        t = torch.as_tensor(np.asarray(x, dtype=np.float32))
        return torch.sigmoid(self(t)).numpy()


def adapter_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    h, inner, d = config.hidden, config.adapter_hidden, config.n_features
    return {
        "scale": (),
        "adapter.0.weight": (inner, h),
        "adapter.0.bias": (inner,),
        "adapter.2.weight": (h, inner),
        "adapter.2.bias": (h,),
        "input_path.weight": (inner, d),
        "input_scale": (d,),
        "input_shift": (d,),
        "logit_offset": (),
        "decision_shift": (),
    }


def with_calibration(state: Mapping[str, torch.Tensor], config: ModelConfig) -> AdapterState:
    """``state`` with the identity calibration, a zero input path and no decision shift where
    it has none (adapters written before these existed stay readable, and mean what they meant)."""
    out = dict(state)
    d = config.n_features
    identity = {
        "input_scale": torch.ones(d),
        "input_shift": torch.zeros(d),
        "logit_offset": torch.zeros(()),
        "decision_shift": torch.zeros(()),
        "input_path.weight": torch.zeros(config.adapter_hidden, d),
    }
    for k, v in identity.items():
        out.setdefault(k, v)
    return out


def check_adapter(state: Mapping[str, torch.Tensor], config: ModelConfig) -> None:
    """Raise WeightsError unless ``state`` is a finite float32 adapter of the configured shape."""
    expected = adapter_shapes(config)
    if set(state) != set(expected):
        raise WeightsError(f"adapter keys {sorted(state)} != expected {sorted(expected)}")
    for name, shape in expected.items():
        t = state[name]
        if tuple(t.shape) != shape:
            raise WeightsError(f"adapter tensor {name!r} has shape {tuple(t.shape)}, want {shape}")
        if t.dtype != torch.float32:
            raise WeightsError(f"adapter tensor {name!r} is {t.dtype}, want float32")
        if not bool(torch.isfinite(t).all()):
            raise WeightsError(f"adapter tensor {name!r} has NaN or infinite values")
    if bool((state["input_scale"] <= 0).any()):
        raise WeightsError("adapter input_scale must be positive")


def adapter_to_bytes(state: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> bytes:
    """Serialise an adapter as safetensors bytes with string metadata; a non-finite adapter is
    refused (WeightsError): nothing with NaN or inf is ever published or stored."""
    for name, t in state.items():
        if not bool(torch.isfinite(t).all()):
            raise WeightsError(f"adapter tensor {name!r} has NaN or infinite values: not serialised")
    return st_save({k: v.contiguous() for k, v in state.items()}, metadata=dict(metadata))


def adapter_from_bytes(data: bytes, config: ModelConfig) -> tuple[AdapterState, dict[str, str]]:
    """Parse and check safetensors bytes; never unpickles anything."""
    try:
        state = with_calibration(st_load(data), config)
        meta = safetensors_metadata(data)
    except Exception as exc:  # safetensors raises its own error types
        raise WeightsError(f"adapter payload is not valid safetensors: {exc}") from exc
    check_adapter(state, config)
    return state, meta


def safetensors_metadata(data: bytes) -> dict[str, str]:
    """The string metadata of safetensors bytes, without reading the tensors."""
    import orjson

    n = int.from_bytes(data[:8], "little")
    header = orjson.loads(data[8 : 8 + n])
    meta = header.get("__metadata__", {}) or {}
    return {str(k): str(v) for k, v in meta.items()}


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
