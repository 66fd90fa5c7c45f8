#!/usr/bin/env bash
# Sets up a fresh machine for billing: system libraries for PDF receipts
# (installed when run as root on Debian/Ubuntu, otherwise named with the exact
# command), a virtual environment in .venv and the project with its dev tools.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
  echo "Нужен Python 3.11 или новее (сейчас: $("$PY" --version 2>&1)). Укажите его: PYTHON=python3.12 $0" >&2
  exit 1
fi

# WeasyPrint needs Pango, HarfBuzz subsetting (2x faster PDFs) and a Cyrillic font; the
# receipt tests read the payment QR codes back from the PDF pages as a bank app would:
# poppler-utils (pdftoppm, pdftotext) turns a page into a picture, zbar-tools (zbarimg) reads it.
PKGS=(libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core poppler-utils zbar-tools)
missing=()
if command -v dpkg >/dev/null 2>&1; then
  for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Устанавливаю системные библиотеки: ${missing[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "Для PDF-квитанций и проверки их QR-кодов нужны системные пакеты. Выполните:" >&2
    echo "  sudo apt-get install -y ${PKGS[*]}" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
