"""Analytics over a memlog store: read-only SQL views, the HTML report, and diffs between points.

- ``memlog.analytics.views``: the stable SQL views (``events``, ``edits``, ``facts``,
  ``cycles``, plus ``audits`` and ``wake``) over the DuckDB event log, ``run_sql`` and
  ``export_parquet``. Queries run on a read-only connection; they can never change the log.
- ``memlog.analytics.report``: ``write_report(store_dir, out_dir)``, a self-contained HTML
  page with matplotlib figures (wake trajectory, recall per cycle, refreshes and prunes per
  cycle, perplexity over time) and the cycles and facts tables.
"""

from memlog.analytics.views import VIEW_NAMES, export_parquet, run_sql

__all__ = ["VIEW_NAMES", "export_parquet", "run_sql"]
