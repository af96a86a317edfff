"""The scenario library: seeded transaction streams with a known drift point.

Every scenario gives a training set, a clean test set and a stream (ids, features,
labels, Bayes posterior) whose first ``drift_at`` rows come from the training regime.

``seed`` is the research system's data exactly: 10 features, only V14 (column 7)
carries signal, 15% fraud, and after drift the legitimate class's V14 mean moves to
-2.2. It is generated with NumPy's legacy ``RandomState(42)`` in the original call
order, so its train/test/drifted sets match the published run row for row.

The others share a richer "card" generator: an ``amount`` observed as exp(latent) and
nine latent features, six of which separate fraud a little each.

>>> s = build("seed")
>>> share_low = lambda d: round(float((d.X[:, 7] < -1.5).mean()), 3)
>>> share_low(s.clean_test), share_low(s.drift_test)
(0.188, 0.774)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from shared.data.payments import PAYMENTS_RULES, drifted_rows
from shared.data.regime import Component, Regime
from shared.data.shapes import LABEL, Dataset, Scenario, Stream
from shared.errors import ConfigError
from shared.schema import Schema

# --------------------------------------------------------------------------- seed
SEED_FEATURES = ("V1", "V2", "V3", "V4", "V5", "V6", "V7", "V14", "V8", "V9")
SEED_RULES = """\
# The research system's one domain rule.
[[rule]]
name = "low_v14"
when = "V14 < -1.5"
label = "fraud"
weight = 1.0
"""


def seed_regime(drift: bool) -> Regime:
    d, v14 = 10, 7
    normal_mean = [0.0] * d
    normal_mean[v14] = -2.2 if drift else 0.0
    fraud_mean, fraud_std = [0.0] * d, [1.0] * d
    fraud_mean[v14], fraud_std[v14] = -2.5, 0.8
    return Regime(
        fraud_rate=0.15,
        normal=(Component(1.0, tuple(normal_mean), (1.0,) * d),),
        fraud=(Component(1.0, tuple(fraud_mean), tuple(fraud_std)),),
    )


def _seed_block(rs: np.random.RandomState, n: int, drift: bool) -> Dataset:
    """The research code's generator, call for call (legacy RandomState order)."""
    n_fraud = int(n * 0.15)
    n_normal = n - n_fraud
    v14_n = rs.normal(-2.2 if drift else 0.0, 1.0, n_normal)
    rest_n = rs.randn(n_normal, 9)
    x_n = np.column_stack([rest_n[:, :7], v14_n, rest_n[:, 7:]])
    v14_f = rs.normal(-2.5, 0.8, n_fraud)
    rest_f = rs.randn(n_fraud, 9)
    x_f = np.column_stack([rest_f[:, :7], v14_f, rest_f[:, 7:]])
    X = np.vstack([x_n, x_f]).astype(np.float32)
    y = np.concatenate([np.zeros(n_normal), np.ones(n_fraud)]).astype(np.float32)
    idx = rs.permutation(len(y))
    return Dataset(X[idx], y[idx])


def _build_seed(seed: int, n_pre: int, n_post: int) -> Scenario:
    rs = np.random.RandomState(seed)
    train = _seed_block(rs, 5000, drift=False)
    clean = _seed_block(rs, 1000, drift=False)
    drifted = _seed_block(rs, 1000, drift=True)
    batches = tuple(rs.choice(len(drifted.y), 100, replace=True) for _ in range(25))
    stream = _regime_stream("seed", seed, n_pre, n_post, seed_regime(False), seed_regime(True))
    return Scenario(
        name="seed",
        description="The research system's drift: legitimate V14 mean 0 -> -2.2; fraud unchanged.",
        features=SEED_FEATURES,
        rules_toml=SEED_RULES,
        train=train,
        clean_test=clean,
        stream=stream,
        drift_test=drifted,
        seed_batches=batches,
    )


# --------------------------------------------------------------------------- card
CARD_FEATURES = ("amount", "V1", "V2", "V3", "V4", "V10", "V11", "V12", "V14", "V17")
_AMT, _V3, _V4, _V12, _V14 = 0, 3, 4, 7, 8
CARD_RULES = """\
# Domain rules for the card scenarios. Conditions use the feature names of the schema.
[[rule]]
name = "very_low_v14"
when = "V14 < -2.5"
label = "fraud"
weight = 1.0
"""
NEW_PATTERN_RULES = (
    CARD_RULES
    + """
[[rule]]
name = "v3_spike"          # the analysts' rule for the new pattern
when = "V3 > 2.2"
label = "fraud"
weight = 1.0
"""
)


def _card_regime() -> Regime:
    d = len(CARD_FEATURES)
    n_mean = [3.5] + [0.0] * (d - 1)
    n_std = [1.0] * d
    f_mean = [4.0, 0.0, 0.0, 0.0, 0.8, -0.8, 0.6, -1.0, -1.6, -0.7]
    f_std = [1.2, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.8, 1.0]
    return Regime(
        fraud_rate=0.15,
        normal=(Component(1.0, tuple(n_mean), tuple(n_std)),),
        fraud=(Component(1.0, tuple(f_mean), tuple(f_std)),),
        log_features=(_AMT,),
    )


def _recalibrated(base: Regime) -> Regime:
    """A currency change on amount and sensor recalibrations on V4, V12, V14, for both classes."""
    d = base.n_features
    scale, offset = [1.0] * d, [0.0] * d
    scale[_AMT] = 1.35  # amounts now in a currency worth 1.35 of the old one
    offset[_V4] = 0.8
    scale[_V12], offset[_V12] = 1.5, 0.6
    scale[_V14], offset[_V14] = 1.3, -1.0
    return replace(base, scale=tuple(scale), offset=tuple(offset))


def _new_pattern(base: Regime) -> Regime:
    """Half of fraud is a new kind: legitimate-looking except a V3 spike."""
    new_mean = list(base.normal[0].mean)
    new_std = list(base.normal[0].std)
    new_mean[_V3], new_std[_V3] = 3.0, 0.7
    new = Component(1.0, tuple(new_mean), tuple(new_std))
    return replace(base, fraud=(base.fraud[0], new))


def _base_with_slot(base: Regime) -> Regime:
    """The base regime with an empty second fraud component (so it can blend with new-pattern)."""
    return replace(base, fraud=(base.fraud[0], replace(base.fraud[0], weight=0.0)))


def _regime_stream(
    name: str,
    seed: int,
    n_pre: int,
    n_post: int,
    before: Regime,
    after: Regime,
    ramp: int = 0,
    drift: bool = True,
) -> Stream:
    """``n_pre`` rows of ``before``, then ``n_post`` of ``after`` (reached over ``ramp`` rows)."""
    rng = np.random.default_rng(seed + 1)
    parts_x, parts_y, parts_p = [], [], []

    def emit(regime: Regime, n: int) -> None:
        x, y = regime.sample(n, rng)
        parts_x.append(x)
        parts_y.append(y)
        parts_p.append(regime.posterior(x))

    emit(before, n_pre)
    chunk = 50
    done = 0
    while done < min(ramp, n_post):
        n = min(chunk, ramp - done)
        emit(before.blend(after, (done + n / 2) / ramp), n)
        done += n
    emit(after, n_post - done)
    X = np.concatenate(parts_x)
    ids = np.array([f"{name}-{i:07d}" for i in range(len(X))])
    return Stream(
        ids=ids,
        X=X,
        y=np.concatenate(parts_y),
        drift_at=n_pre if drift else None,
        posterior=np.concatenate(parts_p),
    )


def _build_card(
    name: str,
    description: str,
    after: Callable[[Regime], Regime],
    ramp: int = 0,
    drift: bool = True,
    rules: str = CARD_RULES,
) -> Callable[[int, int, int], Scenario]:
    def make(seed: int, n_pre: int, n_post: int) -> Scenario:
        base = _card_regime()
        rng = np.random.default_rng(seed)
        train = Dataset(*base.sample(5000, rng))
        clean = Dataset(*base.sample(2000, rng))
        target = after(base)
        start = _base_with_slot(base) if len(target.fraud) == 2 else base
        stream = _regime_stream(name, seed, n_pre, n_post, start, target, ramp=ramp, drift=drift)
        return Scenario(name, description, CARD_FEATURES, rules, train, clean, stream)

    return make


def _surge(base: Regime) -> Regime:
    return replace(base, fraud_rate=0.40)


SCENARIOS: dict[str, tuple[str, Callable[[int, int, int], Scenario]]] = {
    "seed": ("the research system's V14 drift", _build_seed),
    "covariate": (
        "recalibration: amount x1.35, V4 +0.8, V12 x1.5+0.6, V14 x1.3-1.0, both classes",
        _build_card(
            "covariate",
            "Recalibration at the drift point: amount x1.35 (currency), V4 +0.8, V12 x1.5 +0.6, "
            "V14 x1.3 -1.0, for both classes.",
            _recalibrated,
        ),
    ),
    "gradual": (
        "the covariate recalibration, reached linearly over 4,000 transactions",
        _build_card(
            "gradual",
            "The covariate scenario's recalibration, phased in linearly over 4,000 transactions.",
            _recalibrated,
            ramp=4000,
        ),
    ),
    "new-pattern": (
        "half of fraud becomes a new kind that only rule v3_spike (V3 > 2.2) sees",
        _build_card(
            "new-pattern",
            "A new fraud pattern: half of fraud looks legitimate except V3 ~ N(3, 0.7); "
            "the rule v3_spike captures it.",
            _new_pattern,
            rules=NEW_PATTERN_RULES,
        ),
    ),
    "surge": (
        "fraud rate surges from 15% to 40% (prior shift)",
        _build_card(
            "surge",
            "A fraud-rate surge: 15% -> 40%, class-conditional distributions unchanged.",
            _surge,
        ),
    ),
    "payments": (
        "categories and missing values: a fraud ring from a new country, distance 5% -> 30% missing",
        lambda seed, n_pre, n_post: _build_payments(seed, n_pre, n_post),
    ),
    "control": (
        "no drift at all",
        _build_card("control", "No drift: the training regime throughout.", lambda r: r, drift=False),
    ),
}


# --------------------------------------------------------------------------- payments
def _build_payments(seed: int, n_pre: int, n_post: int) -> Scenario:
    """The payments table (:mod:`shared.data.payments`): 20,000 training rows, 5,000 clean
    test rows, and a stream whose rows from ``n_pre`` on carry the ring and the outage."""
    rng = np.random.default_rng(seed)
    parts = [
        drifted_rows(rng, n, drifted)
        for n, drifted in ((20_000, False), (5_000, False), (n_pre, False), (n_post, True))
    ]
    schema = Schema.infer(parts[0][0])
    stream_cols = {k: parts[2][0][k] + parts[3][0][k] for k in parts[0][0]}
    y_stream = np.concatenate([parts[2][1], parts[3][1]])
    ids = np.array([f"tx-{i}" for i in range(len(y_stream))])
    raw = tuple({k: stream_cols[k][i] for k in stream_cols} for i in range(len(y_stream)))
    tables = {
        name: {"id": [f"{name}-{i}" for i in range(len(y))], **cols, LABEL: y.astype(int).tolist()}
        for name, (cols, y, _) in (("train", parts[0]), ("test", parts[1]))
    }
    tables["stream"] = {"id": list(ids), **stream_cols, LABEL: y_stream.astype(int).tolist()}
    return Scenario(
        name="payments",
        description=(
            "Categories and missing values: from the drift a fraud ring from a new country (XX, 6% "
            "of rows, legitimate-looking numbers; 3% legitimate XX traffic) and distance 30% missing "
            "(5% before)."
        ),
        features=schema.columns,
        rules_toml=PAYMENTS_RULES,
        train=Dataset(schema.encode_columns(parts[0][0]), parts[0][1]),
        clean_test=Dataset(schema.encode_columns(parts[1][0]), parts[1][1]),
        stream=Stream(
            ids,
            schema.encode_columns(stream_cols),
            y_stream,
            n_pre,
            np.concatenate([parts[2][2], parts[3][2]]),
            raw,
        ),
        schema=schema,
        raw_tables=tables,
    )


def names() -> list[str]:
    return list(SCENARIOS)


FAMILY_PREFIX = "family:"  # ``family:N``: a stream of the drawn family (shared.data.family)


def build(name: str, seed: int = 42, n_pre: int = 2000, n_post: int = 8000) -> Scenario:
    """Build scenario ``name``; ``n_pre`` clean rows then ``n_post`` drifted rows in its stream.
    ``family:N`` is the drawn family's stream of seed N (:func:`shared.data.family.sample`;
    its problem, drift and training rows all come from N, and ``seed`` is not used)."""
    if name.startswith(FAMILY_PREFIX):
        from shared.data.family import sample

        try:
            family_seed = int(name.removeprefix(FAMILY_PREFIX))
        except ValueError:
            raise ConfigError(f"a drawn scenario is named family:SEED, got {name!r}") from None
        return sample(family_seed, n_pre=n_pre, n_post=n_post).scenario
    if name not in SCENARIOS:
        raise ConfigError(f"unknown scenario {name!r}; choose one of: {', '.join(SCENARIOS)}")
    if n_pre < 0 or n_post < 1:
        raise ConfigError(f"need n_pre >= 0 and n_post >= 1, got {n_pre}, {n_post}")
    return SCENARIOS[name][1](seed, n_pre, n_post)


def from_tables(
    train: str | Path, stream: str | Path, label: str, rules_toml: str = "", drift_at: int | None = None
) -> Scenario:
    """A user's own scenario: clean labelled rows to train on (the last fifth also serves as
    the clean test) and a labelled stream in arrival order, drifting at row ``drift_at``
    (None: the whole stream is judged). No generator, so no Bayes posterior (NaN)."""
    from shared.data.tables import load_table

    tr = load_table(train, label)
    st = load_table(stream, label, tr.features, schema=tr.schema)
    if drift_at is not None and not 0 <= drift_at < len(st.y):
        raise ConfigError(f"drift_at {drift_at} is outside the stream's {len(st.y)} rows")
    cut = len(tr.y) * 4 // 5
    ids = np.array([f"row-{i}" for i in range(len(st.y))])
    return Scenario(
        name=Path(stream).stem,
        description=f"{Path(stream).name}, trained on {Path(train).name}",
        features=tr.features,
        rules_toml=rules_toml,
        train=Dataset(tr.X, tr.y),
        clean_test=Dataset(tr.X[cut:], tr.y[cut:]),
        stream=Stream(ids, st.X, st.y, drift_at, np.full(len(st.y), np.nan)),
        schema=tr.schema,
    )
