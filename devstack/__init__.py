"""Development and test infrastructure: a local stand-in for a TRTC room and a Redis launcher.

Nothing here is used in production. Tests start these from fixtures; ``python -m devstack up``
(``scripts/dev``) starts them for a person at a keyboard.
"""
