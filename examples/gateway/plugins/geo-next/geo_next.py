"""Never imported: it cannot be resolved."""
