"""The Lua scripts. Each runs with lib.lua (the vocabulary they share) and the bindings of its
contract (shared/scripts/) in front of it: `Script.lua_source`."""
