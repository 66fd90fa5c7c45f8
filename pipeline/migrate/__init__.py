"""Moving in from another system: history registers, migrated periods, reconciliation, parallel run.

docs/migration.md tells the whole story. :mod:`pipeline.migrate.model` holds the loaded
history (:class:`~pipeline.migrate.model.History`) and its place in the store;
:mod:`pipeline.migrate.history` reads the old system's export through the workspace's
mapping and validates it; :mod:`pipeline.migrate.periods` seals each migrated month as a
period marked ``migrated``; :mod:`pipeline.migrate.reconcile` compares the old system's
balances with what the import adds up to and guards the first close;
:mod:`pipeline.migrate.compare` is the parallel run of one month.
"""
