"""Live subscriptions: a query's rows, then each change to them as writes arrive.

- ``diff``: the events between two results of a query (added, changed, removed).
- ``hub``: watched queries shared by their subscribers, bounded per-subscriber buffers.
- ``service``: the store's commit hook feeding the hub.
"""
