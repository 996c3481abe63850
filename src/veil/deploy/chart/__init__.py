"""The Helm chart of a mesh: pure data (values, templates) → files."""
