"""Errors and warnings of the tiles package."""

from __future__ import annotations


class TileError(Exception):
    """Root of every error raised while finding, reading or compositing imagery."""


class SceneNotFoundError(TileError, FileNotFoundError):
    """A scene, a scene folder or a band file does not exist."""


class SceneFormatError(TileError, ValueError):
    """A scene file exists but does not hold what the source expects (bands, tags, dtype)."""


class MissingBandError(SceneFormatError):
    """A band the caller needs is not in the scene."""


class LevelMixError(TileError, ValueError):
    """Scenes of different processing levels (L1C top of atmosphere, L2A surface reflectance)
    were mixed in one scan or composite."""


class CloudDetectorMissingError(TileError, ImportError):
    """A scene needs the cloud and shadow detector (it has no SCL, or the config asks for the
    detector) but the detector's package cannot be imported."""


class CloudyPeriodWarning(UserWarning):
    """A period had no clear observation over part or all of a tile."""


class SourceUnavailableError(TileError, ConnectionError):
    """A remote imagery service kept failing (HTTP 429/5xx, timeouts, dropped connections) after
    every retry; the message names the service, the tries and the last reason."""


class HostUnavailableError(SourceUnavailableError):
    """A host failed so many calls in a row (connection refused, name resolution, timeouts) that
    its circuit is open: the rest of the run's work on it fails at once with this message."""


class AuthenticationError(TileError, PermissionError):
    """Credentials are missing, rejected or expired beyond refresh (OAuth client, SAS token)."""


class AssetMissingError(SceneNotFoundError):
    """A STAC item does not offer a band the caller needs, or its file answers 404."""


class ChecksumMismatchError(SceneFormatError):
    """A downloaded or cached file does not match the size or checksum it must have."""


class EmptySearchError(TileError, LookupError):
    """A search found no scene; the message names the query so it can be widened."""
