"""The REST routes: paths only; endpoints live in one module per collection."""

from __future__ import annotations

from starlette.routing import Mount, Route

from server.errors import API_PATH
from server.http import consumers, history, meta, resource_bundles, resources

routes = [
    Route("/api/maestro", meta.api, methods=["GET"]),
    Mount(
        API_PATH,
        routes=[
            Route("/", meta.api_version, methods=["GET"]),
            Route("/openapi", meta.openapi_document, methods=["GET"]),
            Route("/errors", meta.list_errors, methods=["GET"]),
            Route("/errors/{id}", meta.get_error, methods=["GET"]),
            Route("/consumers", consumers.list_consumers, methods=["GET"]),
            Route("/consumers", consumers.create_consumer, methods=["POST"]),
            Route("/consumers/{id}", consumers.get_consumer, methods=["GET"]),
            Route("/consumers/{id}", consumers.patch_consumer, methods=["PATCH"]),
            Route("/consumers/{id}", consumers.delete_consumer, methods=["DELETE"]),
            Route("/resources", resources.list_resources, methods=["GET"]),
            Route("/resources", resources.create_resource, methods=["POST"]),
            Route("/resources/{id}", resources.get_resource, methods=["GET"]),
            Route("/resources/{id}", resources.patch_resource, methods=["PATCH"]),
            Route("/resources/{id}", resources.delete_resource, methods=["DELETE"]),
            Route("/resources/{id}/history", history.resource_history, methods=["GET"]),
            Route("/resource-bundles", resource_bundles.list_bundles, methods=["GET"]),
            Route("/resource-bundles", resource_bundles.create_bundle, methods=["POST"]),
            Route("/resource-bundles/{id}", resource_bundles.get_bundle, methods=["GET"]),
            Route("/resource-bundles/{id}", resource_bundles.replace_bundle, methods=["PUT"]),
            Route("/resource-bundles/{id}", resource_bundles.delete_bundle, methods=["DELETE"]),
            Route("/resource-bundles/{id}/history", history.bundle_history, methods=["GET"]),
        ],
    ),
]
