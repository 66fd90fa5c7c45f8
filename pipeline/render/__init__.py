"""Printed output: payment documents (квитанции, later the full ЕПД) as PDF.

:mod:`pipeline.render.receipts` holds the receipt data model, the Jinja2
template rendering and the WeasyPrint process pool. WeasyPrint is imported
lazily inside functions, so importing this package stays cheap.
"""
