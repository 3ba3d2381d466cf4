"""The collector's read-only web dashboard (`[dashboard] listen`): overview, drill-down, history, JSON and CSV.

Standard library only (`http.server` in a thread): server-side rendered HTML with inline SVG, no script, nothing
fetched from elsewhere. `views` builds the data of every page (the JSON API), `pages` renders it, `server` serves
it with the access rules; `source` is the one place the compliance state is read from.
"""
