"""`faceregen studio`: paint a label map in the browser and watch the face follow.

- :mod:`~faceregen.studio.service`: the model, loaded once, and the work of each request
  (decoding uploads within limits, editing, regenerating), one request at a time;
- :mod:`~faceregen.studio.gallery`: a few faces of the checkpoint's own dataset;
- :mod:`~faceregen.studio.app`: the HTTP API (Starlette) and the page;
- :mod:`~faceregen.studio.cli`: the command line, which serves the app with uvicorn;
- ``static/``: the page, plain HTML, JavaScript and CSS (no build step): ``indexpng.js``
  (index PNGs in and out), ``mask.js`` (the painted label array and its tools), ``studio.js``.

Every regeneration goes through :mod:`faceregen.regen`, the code `faceregen regen` runs.
"""
