"""The studio: the hub's web UI (``/studio``) to see what a model service does.

Overview, Performance, Failures, Transaction search, the end-to-end view of one transaction, Logs
(KQL with charts), Model data, Live metrics and Services. Every number on a page comes from KQL run
through the query API's compiler and application scoping, and every page has a JSON twin. See
docs/studio.md.

- :mod:`~scorewatch.studio.app` — the routes, pages and their JSON twins (``studio_routes(hub)``);
- :mod:`~scorewatch.studio.queries` — the KQL behind each page, from its filters;
- :mod:`~scorewatch.studio.runner` — running it scoped, off the event loop;
- :mod:`~scorewatch.studio.auth` — login tokens, sessions, CSRF;
- :mod:`~scorewatch.studio.live` — live metrics over Server-Sent Events;
- :mod:`~scorewatch.studio.processes` — the services' processes, their CPU and memory;
- :mod:`~scorewatch.studio.transaction` — one operation's timeline and blobs;
- :mod:`~scorewatch.studio.services` — what the Services page reads;
- :mod:`~scorewatch.studio.web` — templates, security headers.
"""
