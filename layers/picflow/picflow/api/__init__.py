"""The jobs API (API Gateway REST): one powertools ``Router`` per resource, the resolver in
:mod:`picflow.api.app`. Nothing is imported here."""
