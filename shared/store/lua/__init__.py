"""The Lua scripts, data for the store (no Python imports them as code; imports nothing). Each runs
with the helpers they share (lib/, its files joined in the order of contract.py's LIB_FILES) and the
bindings of its contract (shared/store/scripts/) in front of it: `Script.lua_source`.
"""
