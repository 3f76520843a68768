"""An agent whose module imports a package nobody installed: a worker must refuse to start, naming it."""

import tokentail_test_no_such_package  # type: ignore[import-not-found]  # noqa: F401


async def agent(ctx: object) -> None:
    pass
