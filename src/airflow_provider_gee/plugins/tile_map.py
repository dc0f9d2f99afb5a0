"""The tile map: an Airflow 3 plugin that shows a DAG run's tiles on a map in Airflow's UI.

A tab on every DAG run's page (an external view, ``destination="dag_run"``) opens a page the
api-server serves (a FastAPI app mounted at ``/gee-tile-map``). The page reads everything through
Airflow's own REST API with the user's session (task instances, the tiling task's tiles, the
exports' and harvests' results and links): it polls no EE of its own and loads nothing from the
internet (the tiles are drawn on a plain background with coordinates).

Every Airflow process loads plugins, task processes included, so this module stays light: the
FastAPI app is built only when the api-server asks for it.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from airflow.plugins_manager import AirflowPlugin

#: where the api-server mounts the page
URL_PREFIX = "/gee-tile-map"

#: the page shows values other people wrote (DAG params, EE's messages, file names): no script
#: but the page's own file runs, no style but its own sheet applies, it talks only to this server
#: and may be framed only by Airflow's UI (same origin)
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
#: the page's files and their media types
_FILES = {
    "tile_map.html": "text/html; charset=utf-8",
    "tile_map.js": "text/javascript; charset=utf-8",
    "tile_map.css": "text/css; charset=utf-8",
}


@cache
def create_app() -> Any:
    """The FastAPI app serving the page (its data comes from Airflow's REST API, in the browser)."""
    from importlib.resources import files

    from fastapi import FastAPI
    from fastapi.responses import Response

    content = {name: files("airflow_provider_gee.plugins").joinpath(name).read_bytes() for name in _FILES}
    app = FastAPI(title="Earth Engine tile map", docs_url=None, redoc_url=None, openapi_url=None)

    def serve(name: str) -> Response:
        return Response(content[name], media_type=_FILES[name], headers=SECURITY_HEADERS)

    @app.get("/")
    def tile_map() -> Response:
        """The map of a run's tiles: ``?dag_id=...&run_id=...``."""
        return serve("tile_map.html")

    @app.get("/tile_map.js")
    def script() -> Response:
        return serve("tile_map.js")

    @app.get("/tile_map.css")
    def style() -> Response:
        return serve("tile_map.css")

    return app


class _LazyApps:
    """``fastapi_apps``, built on first read: only the api-server reads it."""

    def __get__(self, instance: Any, owner: type) -> list[dict[str, Any]]:
        return [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "Earth Engine tile map"}]


class GeeTileMapPlugin(AirflowPlugin):
    """The tile map page and its tab on the DAG run page."""

    name = "gee_tile_map"
    fastapi_apps = _LazyApps()
    external_views = [
        {
            "name": "Tile map",
            "href": f"{URL_PREFIX}/?dag_id={{DAG_ID}}&run_id={{RUN_ID}}",
            "destination": "dag_run",
            "url_route": "gee_tile_map",
        }
    ]
