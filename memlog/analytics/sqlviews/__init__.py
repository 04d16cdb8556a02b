"""The SQL of the stable views, one module per view (each module's docstring lists its columns).

``memlog.analytics.view_sql`` puts them together (``VIEWS``, in creation order) and creates them.
"""
