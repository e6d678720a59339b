"""The night's page, `reports/dt=D/index.html`: what each stage reported, tonight and across the last nights.

`figures.py` gathers a night's figures from what the stages already wrote (a plain dict per night, through
`jobs.storage`), `page.py` turns them into one self-contained HTML page with plots (a pure function), and
`night.py` writes it atomically.
"""
