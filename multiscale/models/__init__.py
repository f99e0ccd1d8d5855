"""The decoder, its presets and parameter counts, and the mesh / logical-axis rules."""

from multiscale.models.config import ModelConfig
from multiscale.models.decoder import Decoder, build_model
from multiscale.models.params import ParamCount, count_params, flops_per_token
from multiscale.models.presets import PRESETS, UnknownPresetError, get_preset
from multiscale.models.sharding import AXIS_RULES, MeshError, make_mesh, parse_mesh

__all__ = ["ModelConfig", "Decoder", "build_model", "ParamCount", "count_params",
           "flops_per_token", "PRESETS", "UnknownPresetError", "get_preset", "AXIS_RULES",
           "MeshError", "make_mesh", "parse_mesh"]
