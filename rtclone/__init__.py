"""rtclone: streaming, real-time voice cloning (SV2TTS) with native kernels."""

__version__ = "0.1.0"
