"""RTMP servers nobody here wrote, from the package registries, for interop tests."""
