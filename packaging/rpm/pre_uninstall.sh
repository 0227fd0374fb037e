if [ "$1" -eq 0 ]; then
    # Erase, not upgrade: stop and disable.
    systemctl disable --now kubejoin.service >/dev/null 2>&1 || :
fi
