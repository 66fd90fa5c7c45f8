"""Debt collection as cases (работа с должниками): from the debtor found to the court's answer.

Law: ``shared/domain/law.md`` §6 (restriction, court order) and §2 (penalties); the choices
and what is UNVERIFIED are in ``docs/collection.md`` and next to the rows of
``rules/collection.csv`` and ``rules/state_duty.csv``.

Modules, in the order of the data flow:

* :mod:`.policy` — the rule tables (who is a debtor, warning days, restriction, state duty);
* :mod:`.debtors` — pure: overdue debt, monthly norm charge (п.118), debtors, agreements;
* :mod:`.cases` — the case store (``HOME/store/collection/``) and its state machine, pure steps;
* :mod:`.documents` — warnings, court order application, claim, arbitration claim (HTML → PDF);
* :mod:`.workflow` — the commands over a workspace (lock, sealed periods, audit);
* :mod:`.summary` — what ``billing collect list`` prints;
* :mod:`.texts` — :func:`~pipeline.collect.texts.warning_texts`, the warning for the ЕПД;
* :mod:`.mail` — e-mail of the warnings through ``[smtp]``.

Importing this package imports none of them (``billing --help`` stays fast).
"""
