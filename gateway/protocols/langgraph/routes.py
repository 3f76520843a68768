"""LangGraph's one router (gateway/protocols/__init__.py includes it): the v1 API's routes
(v1/routes.py, with its runs'), then the v2 protocol's (v2/routes.py), both under `/langgraph`."""

from fastapi import APIRouter

from tokentail.gateway.protocols.langgraph.v1 import routes as v1_routes
from tokentail.gateway.protocols.langgraph.v2 import routes as v2_routes

router = APIRouter()
router.include_router(v1_routes.router)
router.include_router(v2_routes.router)
