"""The synthetic world: Sentinel-2 L2A scenes of a painted Amazon landscape, with their truth.

:func:`generate_world` writes a :class:`WorldSpec` as scenes, truth masks and truth sites
(DESIGN.md section 8; docs/synthetic-world.md). The modules inside (``_x.py``) are private.
"""

from tiles.synthetic._spec import (
    AMW_ATTRIBUTION,
    BOA_ADD_OFFSET,
    GENERATOR_VERSION,
    PIXEL_HA,
    PIXEL_M,
    SCENE_BANDS,
    TruthClass,
    World,
    WorldScene,
    WorldSpec,
    load_mining_shapes,
    mgrs_tile,
    parse_quarter,
    reflectance_to_dn,
)
from tiles.synthetic._world import generate_world

__all__ = [
    "AMW_ATTRIBUTION",
    "BOA_ADD_OFFSET",
    "GENERATOR_VERSION",
    "PIXEL_HA",
    "PIXEL_M",
    "SCENE_BANDS",
    "TruthClass",
    "World",
    "WorldScene",
    "WorldSpec",
    "generate_world",
    "load_mining_shapes",
    "mgrs_tile",
    "parse_quarter",
    "reflectance_to_dn",
]
