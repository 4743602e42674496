#!/usr/bin/env sh
# Prints the path of a working Python 3.13 (the functions' runtime, which `sam build` needs on PATH), or explains
# in one line how to get one and exits 1. pyenv shims are tried too, but only count if they really run 3.13.
for candidate in "$(command -v python3.13 2>/dev/null)" "$HOME"/.pyenv/versions/3.13*/bin/python3.13 \
    /usr/local/bin/python3.13 /usr/bin/python3.13 /opt/homebrew/bin/python3.13; do
    if [ -n "$candidate" ] && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; then
        echo "$candidate"
        exit 0
    fi
done
echo "sam build needs Python 3.13 (the functions' runtime): install it (e.g. 'pyenv install 3.13' or your package manager's python3.13) and run make build again" >&2
exit 1
