"""What the notebooks in notebooks/ do, as plain, testable Python: reading their parameters
(setup), one run headless or in the ipywidgets panel (headless, panel, figures), editing (edit,
edit_panel), applying a LoRA (apply), a sweep's report (sweep_report), and executing notebooks
with papermill (papermill).
"""
