"""The app's tabs, one module each: ``build(...)`` lays a tab out and wires its events inside the
``gr.Tab`` that `app.main.build_demo` opens; what they share is in `app.widgets`."""
