"""After a match: quarantine, evidence, report records, reporters and filing."""
