"""Typed, frozen training configuration loaded from YAML with dotted command-line overrides.

Every section is a frozen dataclass (:mod:`.sections`), so a typo in a YAML key or an override
is an error that names the key instead of silently becoming a new setting (the EasyDict trap);
:mod:`.loading` reads and writes them, :mod:`.docs` lists the keys with their documentation.

>>> cfg = load_config(None, ["optim.lr=0.05", "head.type=cosface"])
>>> cfg.optim.lr, cfg.head.type
(0.05, 'cosface')
"""

from faceforge.config.docs import ConfigKey, config_keys, field_docs
from faceforge.config.loading import (
    MAX_CONFIG_BYTES,
    build_dataclass,
    builtin_config_path,
    config_from_dict,
    config_to_dict,
    load_config,
    override_config,
    parse_override,
    parse_yaml,
    save_config,
)
from faceforge.config.sections import (
    AugmentConfig,
    Config,
    DataConfig,
    EvalConfig,
    HeadConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    SyntheticConfig,
    TrainConfig,
)

__all__ = [
    "MAX_CONFIG_BYTES",
    "AugmentConfig",
    "Config",
    "ConfigKey",
    "DataConfig",
    "EvalConfig",
    "HeadConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "SyntheticConfig",
    "TrainConfig",
    "build_dataclass",
    "builtin_config_path",
    "config_from_dict",
    "config_keys",
    "config_to_dict",
    "field_docs",
    "load_config",
    "override_config",
    "parse_override",
    "parse_yaml",
    "save_config",
]
