"""The unit tier (fakeredis, no server: conftest.py) in rooms mirroring the source's; project/: repository rules."""
