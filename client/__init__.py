"""``maestro consumer|resourcebundle|resource|mqtt``: the command-line client for people.

It talks to a hub over its REST API (:mod:`client.rest`) and watches a broker with the shared MQTT adapter
(:mod:`client.mqtt_watch`); it imports neither the hub nor the agent (an import-linter contract), only
:mod:`protocol` and itself. ``maestro`` (the hub's console script) finds these commands through the
``maestro.commands`` entry points and loads them without importing the hub.

Start-up time is part of the interface (a person types these commands): the entry points in :mod:`client.cli`
import only the standard library, and each command imports what it needs when it runs — ``yaml`` only for YAML,
the MQTT adapter only for ``maestro mqtt watch``. The REST client is the standard library's ``http.client``,
because importing ``httpx`` alone costs more than the whole ``maestro resourcebundle list``.
"""
