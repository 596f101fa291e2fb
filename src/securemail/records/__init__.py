"""Records: one tamper-evident operations log, retention and disposal, and requests.

- :mod:`~securemail.records.chain` — the hash-chained log in the node database
  (``records_log``): canonical records, appended in one order by every process and node;
- :mod:`~securemail.records.checkpoint` — the chain's head signed by the node (CMS);
- :mod:`~securemail.records.verify` — checks every link, disposal and checkpoint;
- :mod:`~securemail.records.messages`, :mod:`~securemail.records.sources` — the queue's
  events and the audit files (key custody, accounts) as records;
- :mod:`~securemail.records.retention`, :mod:`~securemail.records.holds`,
  :mod:`~securemail.records.disposal` — classes, periods, legal holds, destruction;
- :mod:`~securemail.records.export` — Privacy Act and OIA request bundles.

Errors: ``RecordsError(SecureMailError[RecordsReason])`` (securemail.records.errors).
Nothing here imports the node; the composition root hands in engines and the node key.
"""
