"""The Label Studio side: its payloads read into gold items, its API client, and reconciliation
of stored ground truth with what Label Studio holds."""
