-- podcap standalone store, version 2: list pages walk this index instead of sorting every
-- capture of the namespace on each request.
CREATE INDEX captures_by_creation ON captures (namespace, created_at, name);
