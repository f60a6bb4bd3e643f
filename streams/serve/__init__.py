"""The HTTP side: answers built once (API, OpenAPI, page, health, errors), thin framework adapters."""
