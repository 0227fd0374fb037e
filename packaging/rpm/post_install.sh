install -d -m 0755 /etc/kubejoin/config.d
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -eq 1 ]; then
    # First install: enable, do not start (cloud-init or an operator starts the join).
    systemctl enable kubejoin.service >/dev/null 2>&1 || :
fi
