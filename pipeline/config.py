"""Pipeline configuration: one typed, strictly checked config object loaded from YAML.

One module, past 400 lines, because every key's type, default and meaning sits in the
dataclasses here, next to the cross-key rules that read them; the binding itself is
schemas/config_binding.py."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from typing import Any, Literal

from tandem.schemas.config_binding import NOT_A_KEY, bind, check_ranges, read_config
from tandem.schemas.exit_status import BadInputError
from tandem.schemas.yaml_config import YamlConfigError
from tandem.schemas.yaml_config import apply_override as shared_override

ProblemType = Literal["binary_classification", "multiclass_classification", "regression"]
DataFormat = Literal["csv", "tfrecord", "request_log"]
RunningMode = Literal["auto", "in_memory", "multi_threading", "multi_processing"]

FeatureKind = Literal["numeric", "categorical", "bucketize", "skip"]
Metric = Literal["auc", "accuracy", "rmse", "mae"]

# Stages `tandem run --until` can stop after, in data-flow order.
STAGES = ("validate", "transform", "train", "evaluate", "push")

CONFIGS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


class ConfigError(BadInputError):
    """A config file that is missing, malformed, or has a bad key or value."""


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the examples are and how they are laid out."""

    location: str  # a directory (or the log directory for request_log); relative: from the CWD
    # Default: tfrecord when `location` holds TFRecord files (.tfrecord, .gz), else csv.
    format: DataFormat | None = None
    # Relative to `location`; {SPAN} makes each matching directory a new span. Default:
    # "span-{SPAN}/*" when `location` has span-N directories, else every CSV ("*.csv") or
    # every file ("*") directly in it.
    pattern: str = ""
    # format request_log: `location` is the gateway's log directory (or a glob) and `labels`
    # the late labels (request_id,label[,timestamp]); labels later than label_delay_s after
    # their request are left out.
    labels: str = ""
    label_delay_s: float = 7 * 86400.0  # 7 days


@dataclasses.dataclass(frozen=True)
class SplitConfig:
    """Hash-bucket split of each span into train and eval."""

    train_buckets: int = 2  # hash buckets of each span that go to the train split
    eval_buckets: int = 1  # and to the eval split (2:1 by default)


@dataclasses.dataclass(frozen=True)
class BeamConfig:
    """Beam settings; tandem.pipeline.beam turns these into pipeline args in one place."""

    # DirectRunner's worker threads or processes; 0: one in process (in_memory), one per core
    # of the machine the job runs on otherwise (tandem.pipeline.beam.num_workers).
    direct_num_workers: int = 0
    # auto: in process for small inputs, worker processes for large ones (tandem.pipeline.beam).
    direct_running_mode: RunningMode = "auto"
    # Passed through verbatim, e.g. ["--runner=DataflowRunner", "--project=..."].
    extra_args: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class FeatureOptions:
    """Per-feature preprocessing; unset fields take the defaults for the feature's type."""

    kind: FeatureKind | None = None  # numeric | categorical | bucketize | skip
    num_buckets: int | None = None  # bucketize: quantile buckets (10)
    boundaries: list[float] | None = None  # bucketize at these values instead of quantiles
    frequency_threshold: int | None = None  # vocabulary: values seen fewer times are OOV (5)
    num_oov_buckets: int | None = None  # vocabulary: buckets for unseen values (1)

    def as_options(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The served model's name and the Trainer's hyperparameters."""

    name: str = ""  # serving name; defaults to the pipeline name
    # The deep part's layers; []: a wide (linear plus crosses) model only.
    hidden_units: list[int] = dataclasses.field(default_factory=lambda: [64, 32])
    # Feature crosses in the wide part, e.g. [[age, genre]]: each a categorical or bucketized
    # model feature; the cross learns an interaction a linear model cannot.
    crosses: list[list[str]] = dataclasses.field(default_factory=list)
    embedding_dim: int = 0  # 0: chosen from each vocabulary's size
    learning_rate: float = 0.005  # Adam's
    batch_size: int = 256  # training examples per step
    epochs: int = 10  # at most; an epoch is at least 30 batches (the input repeats)
    max_steps: int = 0  # 0: no cap (a cap makes a deliberately short training run)
    # Epochs without a better eval value of the deciding metric before training stops (the
    # best epoch is kept).
    early_stopping_patience: int = 2
    seed: int = 42  # every seed of the training: the same inputs train the same model
    # simplest_adequate: export the configured model only when it beats a linear model on
    # the same features beyond the eval split's sampling error, else the linear one;
    # configured: always the configured one (the comparison is still recorded).
    select: Literal["simplest_adequate", "configured"] = "simplest_adequate"


@dataclasses.dataclass(frozen=True)
class EvaluationConfig:
    """Evaluator gate: a value threshold and a change threshold against the last blessed
    model, on one deciding metric; slices are reported per feature value."""

    metric: Metric | None = None  # default: auc (binary), accuracy (multi-class), rmse
    # Lower bound (auc, accuracy) or upper bound (rmse, mae). None: the model must beat the
    # naive predictor (AUC 0.5, the majority class, the training mean) beyond its sampling
    # error on the eval split (components/evaluator.py).
    threshold: float | None = None
    # Allowed change for the worse vs the last blessed model, absolute, in the metric's units.
    # None: 1.96 paired sampling errors of candidate - baseline on the eval split (the
    # Evaluator measures and applies it: components/evaluator.py).
    max_regression: float | None = None
    # Feature crosses the metrics are reported for, e.g. [[country], [device]]; the shadow
    # replay slices by them too.
    slices: list[list[str]] = dataclasses.field(default_factory=list)
    # Per-slice gate (Model 6): every slice of `slices` and `inclusion` with at least
    # min_slice_size examples must reach slice_threshold (None: slices reported, not gated).
    slice_threshold: float | None = None
    min_slice_size: int = 200  # a smaller slice is reported, not gated
    # Inclusion (Model 7): slices by who the users are; also the best-worst gap is bounded.
    inclusion: list[list[str]] = dataclasses.field(default_factory=list)
    max_slice_gap: float = 0.1  # an inclusion slice may trail the overall metric by this much


@dataclasses.dataclass(frozen=True)
class DriftThresholds:
    """When a feature's change alerts (components/monitor/drift.py): its effect size reaches
    one of these, and its test survives the false-discovery-rate control. None: measured and
    reported, not gated."""

    psi: float | None = 0.15  # population stability index
    wasserstein: float | None = None  # in the feature's own units
    linf: float | None = None  # L-infinity distance of a categorical's value shares
    missing: float | None = 0.05  # change in the share of examples lacking the feature
    skip: bool = False  # leave the feature out of the judgment


@dataclasses.dataclass(frozen=True)
class MonitorConfig:
    """`tandem monitor`: windows of logged traffic, compared with the previous window (drift)
    and with the served model's training statistics (skew)."""

    window_records: int = 1000  # logged requests per window (when window_s is 0)
    window_s: float = 0.0  # window by the request's arrival time instead
    min_examples: int = 200  # a smaller window is reported as too small, not judged
    alpha: float = 0.05  # false-discovery rate across the features of one comparison
    bins: int = 10  # PSI bins (the reference's deciles)
    bootstrap: int = 200  # resamples behind each measure's interval
    seed: int = 0  # of the resamples
    # Thresholds against the previous window, and against the training statistics.
    drift: DriftThresholds = dataclasses.field(default_factory=DriftThresholds)
    skew: DriftThresholds = dataclasses.field(default_factory=DriftThresholds)
    # Per feature; `skip: true` leaves one out. Identifiers are not listed here: the schema
    # declares them (schemas/identifiers.py), for the monitor and the statistics report alike.
    features: dict[str, DriftThresholds] = dataclasses.field(default_factory=dict)
    training_statistics: str = ""  # default: found through ML Metadata for the served model
    id_feature: str = "request_id"  # joins logged and training examples (feature-value skew)
    training_examples: str = ""  # a glob of training tf.Examples: feature-value skew by id
    max_mismatch_rate: float = 0.0  # share of joined pairs whose value may differ
    textfile: str = ""  # Prometheus textfile collector file for the alerts
    webhook: str = ""  # POSTed a JSON summary when drift or skew is found


@dataclasses.dataclass(frozen=True)
class ChecksConfig:
    """Model checks the Trainer runs on every model (components/model_checks.py); they are
    the automated evidence of `tandem score`. Failing gate checks stop the run before the
    Evaluator."""

    enabled: bool = True  # false: no model checks (and no evidence for the score)
    sample_examples: int = 4000  # eval examples the checks score
    export_examples: int = 500  # raw eval examples for the export, privacy and code tests
    spec_steps: int = 50  # Infra 2: updates on one batch; its loss must fall by a quarter
    tuning_trials: int = 4  # Model 3: the configured hyperparameters + 3 seeded variants
    tuning_steps: int = 150  # training steps per trial, at most 3 passes over the data
    # Infra 1: two trainings from the same seed, apart from the main one, of at least this
    # many steps, or one pass over the training data if more (counted at most 500 steps).
    reproducibility_steps: int = 100
    reproducibility_tolerance: float = 1e-4  # max |prediction difference|
    # Data 2: shuffles per group of correlated inputs; their spread is the noise a group's
    # drop must clear (at least 2)
    importance_repeats: int = 20
    importance_correlation: float = 0.8  # Data 2: inputs at |r| >= this shuffle together
    # Data 2: the smallest drop that matters, as a share of the model's lift over chance; an
    # input not shown to help is called useless only when its drop's upper bound is below it
    importance_material: float = 0.01
    # Data 7: serving vs training input path, the largest difference; for regression relative to
    # the larger of the label's standard deviation and the answer's size (float32 rounding grows
    # with both)
    export_tolerance: float = 1e-5
    private_features: list[str] = dataclasses.field(default_factory=list)  # Data 5


@dataclasses.dataclass(frozen=True)
class ScoreConfig:
    """`tandem score`: where manual reviews live and the limits its checks use."""

    reviews: str = ""  # a YAML file of reviews: [{test, reviewer, date, link, note}]
    max_model_age_days: float = 30.0  # Monitoring 4: the serving model's age
    offline_online_tolerance: float = 0.05  # Model 2: |offline - online| of B - A
    # Data 3: a feature's share of its source's time per request (the request itself is a
    # source: the gateway's validation and logging of the features that arrive with it)
    max_feature_cost_ms: float = 1.0
    # Monitoring 6: the smallest slowdown (new / previous warmup latency, interleaved rounds)
    # worth a failure; it fails only beyond the rounds' own noise too
    max_latency_regression: float = 1.25
    max_memory_regression: float = 1.5  # Monitoring 6: new / previous resident memory


@dataclasses.dataclass(frozen=True)
class DriftRecipe:
    """`tandem loop`'s drifted traffic on your own data: one feature of part of the held-out
    requests changed, so that the monitor's step has something to find."""

    feature: str = ""  # empty: the first numeric model feature, else the first categorical
    shift: float | None = None  # numeric: add this many of its standard deviations (2)
    # categorical: exchange these two values (default: the most and the least frequent in
    # the training part)
    swap: list[str] | None = None


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    """`tandem loop --config NAME`: the loop on this config's own data. A seeded share of the
    rows is held out of v1's training and sent as requests; their labels arrive later."""

    holdout: float = 0.6  # of the rows: requests (60% clean, 20% drifted, 20% mirrored)
    label_delay_s: float = 30.0  # a label arrives this long after its request
    drift: DriftRecipe = dataclasses.field(default_factory=DriftRecipe)


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """One dataset's pipeline: data, label, problem type, schema, outputs, Beam."""

    name: str  # the pipeline's name: the default model name, schema and output paths
    data: DataConfig
    label: str  # the label column or feature
    problem_type: ProblemType  # what the label is: a class (two or more) or a number
    schema: str = ""  # default: schemas/<name>/schema.pbtxt (what `schema propose` writes)
    output_dir: str = ""  # default: outputs/<name>
    split: SplitConfig = dataclasses.field(default_factory=SplitConfig)
    features: dict[str, FeatureOptions] = dataclasses.field(default_factory=dict)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    evaluation: EvaluationConfig = dataclasses.field(default_factory=EvaluationConfig)
    serving_dir: str = ""  # default: <output_dir>/serving
    beam: BeamConfig = dataclasses.field(default_factory=BeamConfig)
    monitor: MonitorConfig = dataclasses.field(default_factory=MonitorConfig)
    checks: ChecksConfig = dataclasses.field(default_factory=ChecksConfig)
    score: ScoreConfig = dataclasses.field(default_factory=ScoreConfig)
    loop: LoopConfig = dataclasses.field(default_factory=LoopConfig)
    source: str = dataclasses.field(default="", compare=False, metadata=NOT_A_KEY)

    @property
    def pipeline_root(self) -> str:
        return os.path.join(self.output_dir, "pipeline_root")

    @property
    def metadata_path(self) -> str:
        return os.path.join(self.output_dir, "metadata.sqlite")

    @property
    def model_name(self) -> str:
        return self.model.name or self.name

    @property
    def push_dir(self) -> str:
        """<serving_dir>/<model_name>: Pusher writes integer version directories here."""
        return os.path.join(self.serving_dir, self.model_name)

    @property
    def deciding_metric(self) -> str:
        defaults = {"regression": "rmse", "multiclass_classification": "accuracy"}
        return self.evaluation.metric or defaults.get(self.problem_type, "auc")


# Keys of earlier versions, and what replaced them.
REMOVED_KEYS = {
    "checks.min_gain_over_baseline": "the Trainer now exports the linear model unless the "
    "configured one is better beyond the eval split's sampling error (model.select)",
    "checks.baseline_steps": "the linear model now trains like the configured one "
    "(model.select)",
    "checks.min_importance": "each feature's drop is now judged against the shuffle noise "
    "measured in the same run (checks.importance_repeats)",
    "monitor.ignore": "declare identifiers in the schema (annotation { tag: \"identifier\" } "
    "on the feature), which the monitor and the statistics report both read; leave out any "
    "other feature with monitor.features.<name>.skip: true",
}

def resolve_path(value: str, base_dir: str | None = None) -> str:
    """Resolve a config path: `pkg:<package>/<rest>` finds an installed package's files
    (e.g. the taxi CSV inside tfx); other relative paths are taken from base_dir or the
    working directory. tandem's own packages come first and need no `tandem/` prefix:
    `pkg:schemas/...` is tandem.schemas (`pkg:tandem/schemas/...` names it too)."""
    if value.startswith("pkg:"):
        package, _, rest = value[4:].partition("/")
        if package == "tandem" and rest:
            package, _, rest = rest.partition("/")
            candidates = [f"tandem.{package}"]
        else:
            candidates = [f"tandem.{package}", package]
        for name in candidates:
            try:
                spec = importlib.util.find_spec(name)
            except (ImportError, ValueError):
                spec = None
            if spec is not None and spec.submodule_search_locations:
                return os.path.join(list(spec.submodule_search_locations)[0], rest)
        raise ConfigError(f"package '{package}' in path {value!r} is not installed")
    if "://" in value or os.path.isabs(value):
        return value
    return os.path.abspath(os.path.join(base_dir or os.getcwd(), value))


def apply_override(raw: dict, assignment: str) -> None:
    """Apply one `dotted.key=value` override (value parsed as YAML) to a raw config dict."""
    try:
        shared_override(raw, assignment)
    except YamlConfigError as e:
        raise ConfigError(str(e)) from None


def named_config(name: str) -> str:
    """Path of a config shipped with tandem (`listening`, `taxi`)."""
    return os.path.join(CONFIGS_DIR, f"{name}.yaml")


TFRECORD_SUFFIXES = (".tfrecord", ".tfrecords", ".tfrecord.gz", ".tfrecords.gz")


def _is_tfrecord(path: str) -> bool:
    """A TFRecord file by its name: .tfrecord(s), optionally .gz; any other .gz but a
    compressed CSV (ExampleGen reads .csv.gz as CSV)."""
    return path.endswith(TFRECORD_SUFFIXES) or (path.endswith(".gz")
                                                and not path.endswith(".csv.gz"))


def _data_defaults(data: DataConfig) -> DataConfig:
    """Fill an unset format and pattern from what `location` holds (a local directory; a
    remote or missing location gets the plain defaults, and preflight names what is
    missing)."""
    import glob
    import re

    local = "://" not in data.location and os.path.isdir(data.location)
    names = sorted(os.listdir(data.location)) if local else []
    spans = [n for n in names if re.fullmatch(r"span-\d+", n)
             and os.path.isdir(os.path.join(data.location, n))]
    fmt = data.format
    if fmt is None:
        inside = glob.glob(os.path.join(data.location, "span-*", "*")) if spans else \
            [os.path.join(data.location, n) for n in names]
        fmt = "tfrecord" if any(_is_tfrecord(f) for f in inside) else "csv"
    pattern = data.pattern
    if not pattern:
        pattern = "span-{SPAN}/*" if spans or not local else (
            ("*.csv*" if any(n.endswith(".csv.gz") for n in names) else "*.csv")
            if fmt == "csv" else "*")
    return dataclasses.replace(data, format=fmt, pattern=pattern)


# A number's range, per dotted key: (low, high, why); None is unbounded. A value a user may
# set to null (no gate) is not checked when null.
RANGES: dict[str, tuple[float | None, float | None, str]] = {
    "split.train_buckets": (1, None, ""),
    "split.eval_buckets": (1, None, ""),
    "beam.direct_num_workers": (0, None, "0: tandem picks by the running mode"),
    "loop.holdout": (0.05, 0.9, "the share of rows held out of v1's training"),
    "checks.importance_repeats": (2, None, "the shuffle noise is measured from their spread"),
    "checks.sample_examples": (1, None, ""),
    "checks.export_examples": (1, None, ""),
    "checks.spec_steps": (1, None, ""),
    "checks.tuning_trials": (1, None, "1: the configured hyperparameters only"),
    "checks.tuning_steps": (1, None, ""),
    "checks.reproducibility_steps": (1, None, ""),
    "checks.reproducibility_tolerance": (0, None, ""),
    "checks.importance_correlation": (0, 1, "an absolute correlation"),
    "checks.export_tolerance": (0, None, ""),
    "evaluation.min_slice_size": (1, None, ""),
    "evaluation.max_slice_gap": (0, None, ""),
    "monitor.window_records": (1, None, ""),
    "monitor.window_s": (0, None, "0: windows by count"),
    "monitor.min_examples": (1, None, ""),
    "monitor.alpha": (0, 1, "a false-discovery rate"),
    "monitor.bins": (2, None, ""),
    "monitor.bootstrap": (20, None, "a 95% interval needs resamples beyond its tails"),
    "monitor.max_mismatch_rate": (0, 1, "a share of joined pairs"),
    "score.max_model_age_days": (0, None, ""),
    "score.offline_online_tolerance": (0, None, ""),
    "score.max_feature_cost_ms": (0, None, ""),
    "score.max_latency_regression": (1, None, "a ratio of new to previous latency"),
    "score.max_memory_regression": (1, None, "a ratio of new to previous memory"),
}
# Every feature's drift and skew thresholds, and the monitor's defaults for them.
for _section in ("monitor.drift", "monitor.skew", "monitor.features.*"):
    RANGES.update({f"{_section}.psi": (0, None, ""), f"{_section}.wasserstein": (0, None, ""),
                   f"{_section}.linf": (0, 1, "a share of the values"),
                   f"{_section}.missing": (0, 1, "a share of the examples")})


def load_config(path: str, overrides: list[str] | None = None) -> PipelineConfig:
    """Load and check a pipeline config; errors name the offending key."""
    if not os.path.exists(path) and os.path.exists(named_config(path)):
        path = named_config(path)
    raw = read_config(path, "pipeline config", error=ConfigError)
    if not raw:
        raise ConfigError(f"config {path} is empty")
    for assignment in overrides or []:
        apply_override(raw, assignment)
    config = bind(PipelineConfig, raw, "pipeline config", ConfigError, REMOVED_KEYS)
    if config.loop.drift.shift is not None and config.loop.drift.swap is not None:
        raise ConfigError("keys 'loop.drift.shift' and 'loop.drift.swap': give one (shift a "
                          "numeric feature, or swap two values of a categorical one)")
    if config.loop.drift.swap is not None and len(config.loop.drift.swap) != 2:
        raise ConfigError(f"key 'loop.drift.swap' must name two values; got "
                          f"{config.loop.drift.swap!r}")
    if not 0 < config.checks.importance_material < 1:
        raise ConfigError("key 'checks.importance_material' must be between 0 and 1: a share "
                          "of the model's lift over chance")
    check_ranges(config, RANGES, "pipeline config", ConfigError)
    if config.problem_type == "regression" and config.evaluation.metric in ("auc", "accuracy"):
        raise ConfigError(
            f"key 'evaluation.metric': {config.evaluation.metric} needs a classification problem"
        )
    if config.problem_type == "multiclass_classification" and config.evaluation.metric == "auc":
        raise ConfigError("key 'evaluation.metric': use accuracy for multiclass_classification")
    if config.problem_type != "regression" and config.evaluation.metric in ("rmse", "mae"):
        raise ConfigError(
            f"key 'evaluation.metric': {config.evaluation.metric} needs a regression problem"
        )
    if config.data.format == "request_log" and not config.data.labels:
        raise ConfigError("key 'data.labels' is required with data.format request_log")
    data = _data_defaults(dataclasses.replace(
        config.data, location=resolve_path(config.data.location),
        labels=resolve_path(config.data.labels) if config.data.labels else ""))
    output_dir = resolve_path(config.output_dir or os.path.join("outputs", config.name))
    schema = config.schema or os.path.join("schemas", config.name, "schema.pbtxt")
    serving_dir = (
        resolve_path(config.serving_dir) if config.serving_dir
        else os.path.join(output_dir, "serving")
    )
    if config.score.reviews:
        config = dataclasses.replace(config, score=dataclasses.replace(
            config.score, reviews=resolve_path(config.score.reviews)))
    return dataclasses.replace(
        config,
        data=data,
        schema=resolve_path(schema),
        output_dir=output_dir,
        serving_dir=serving_dir,
        source=os.path.abspath(path),
    )
