#!/bin/sh
# RabbitMQ in the foreground with one user from RABBITMQ_USER / RABBITMQ_PASSWORD
# (guest stays refused from other hosts). The server drops to the rabbitmq user.
set -eu
: "${RABBITMQ_USER:?set RABBITMQ_USER}" "${RABBITMQ_PASSWORD:?set RABBITMQ_PASSWORD}"
cat > /etc/rabbitmq/rabbitmq.conf <<CONF
listeners.tcp.default = 5672
default_user = $RABBITMQ_USER
default_pass = $RABBITMQ_PASSWORD
CONF
chown rabbitmq:rabbitmq /etc/rabbitmq/rabbitmq.conf
chmod 0600 /etc/rabbitmq/rabbitmq.conf
exec /usr/sbin/rabbitmq-server
