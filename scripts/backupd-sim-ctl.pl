#!/usr/bin/perl
# A client of backupd-sim's control protocol (JSON lines; docs/control-protocol.md),
# for test suites not written in Rust, such as Cassandane. Core Perl modules only.
#
# As a command:
#   backupd-sim-ctl.pl HOST:PORT lock USER [hold|reject]
#   backupd-sim-ctl.pl HOST:PORT unlock NAME-OR-USER
#   backupd-sim-ctl.pl HOST:PORT fault '{"action":"drop-after","when":{"verb":"APPLY MAILBOX"},"nth":1}'
#   backupd-sim-ctl.pl HOST:PORT mark NAME
#   backupd-sim-ctl.pl HOST:PORT clear
#   backupd-sim-ctl.pl HOST:PORT status
#   backupd-sim-ctl.pl HOST:PORT raw '{"cmd":"status"}'
# It prints the status as JSON on stdout and exits 0. If the server refuses the
# request, it prints the error on stderr and exits 1. On a usage or connection
# error it exits 2.
#
# As a module:
#   require "scripts/backupd-sim-ctl.pl";
#   my $ctl = BackupdSim::Control->new("127.0.0.1:$port");
#   $ctl->lock(user => 'alice'); $ctl->status->{users}{alice}{locked};
use strict;
use warnings;

package BackupdSim::Control;

use IO::Socket::IP;
use IO::Select;
use JSON::PP;

# The longest answer accepted (a status of many locks and users stays far below).
my $MAX_ANSWER = 16 * 1024 * 1024;

sub new {
    my ($class, $addr, %opt) = @_;
    my ($host, $port) = $addr =~ /^\[?([^\]]*)\]?:(\d+)$/
        or die "backupd-sim control: `$addr`: expected HOST:PORT\n";
    my $timeout = $opt{timeout} // 10;
    my $sock = IO::Socket::IP->new(
        PeerHost => $host,
        PeerPort => $port,
        Timeout  => $timeout,
    ) or die "backupd-sim control: cannot connect to $addr: $@\n";
    $sock->autoflush(1);
    return bless {
        sock    => $sock,
        addr    => $addr,
        timeout => $timeout,
        json    => JSON::PP->new->utf8->canonical,
        buf     => '',
    }, $class;
}

# Send one request (a hash), return the whole answer (a hash with `ok` and
# `status` or `error`); dies on a closed connection or no answer in time.
sub request {
    my ($self, $req) = @_;
    my $line = $self->{json}->encode($req) . "\n";
    $self->{sock}->print($line)
        or die "backupd-sim control: writing to $self->{addr}: $!\n";
    my $sel      = IO::Select->new($self->{sock});
    my $deadline = time + $self->{timeout};
    while ($self->{buf} !~ /\n/) {
        my $left = $deadline - time;
        die "backupd-sim control: no answer from $self->{addr} within $self->{timeout} s\n"
            if $left <= 0 || !$sel->can_read($left);
        my $n = sysread($self->{sock}, my $chunk, 65536);
        die "backupd-sim control: reading from $self->{addr}: $!\n" unless defined $n;
        die "backupd-sim control: $self->{addr} closed the connection\n" if $n == 0;
        $self->{buf} .= $chunk;
        die "backupd-sim control: answer longer than $MAX_ANSWER bytes\n"
            if length $self->{buf} > $MAX_ANSWER;
    }
    $self->{buf} =~ s/^([^\n]*)\n//;
    return $self->{json}->decode($1);
}

# Send one request; return its status, or die with the server's error.
sub call {
    my ($self, $req) = @_;
    my $answer = $self->request($req);
    die "backupd-sim control: $answer->{error}\n" unless $answer->{ok};
    return $answer->{status};
}

sub lock   { my ($self, %lock)  = @_; $self->call({ cmd => 'lock',  lock  => \%lock }) }
sub fault  { my ($self, %fault) = @_; $self->call({ cmd => 'fault', fault => \%fault }) }
sub unlock { my ($self, $name)  = @_; $self->call({ cmd => 'unlock', name => $name }) }
sub mark   { my ($self, $name)  = @_; $self->call({ cmd => 'mark',   name => $name }) }
sub clear  { $_[0]->call({ cmd => 'clear' }) }
sub status { $_[0]->call({ cmd => 'status' }) }

package main;

sub backupd_sim_ctl_main {
    my @args = @_;
    my $usage = "usage: backupd-sim-ctl.pl HOST:PORT lock USER [hold|reject] | unlock NAME"
        . " | fault JSON | mark NAME | clear | status | raw JSON\n";
    my ($addr, $op, @rest) = @args;
    unless (defined $op) { print STDERR $usage; return 2 }
    my $json = JSON::PP->new->utf8->canonical;
    my %needs = (lock => 1, unlock => 1, fault => 1, mark => 1, raw => 1, clear => 0, status => 0);
    unless (exists $needs{$op} && @rest >= $needs{$op}) { print STDERR $usage; return 2 }
    my $req;
    if ($op eq 'lock') {
        $req = { cmd => 'lock', lock => { user => $rest[0], (defined $rest[1] ? (mode => $rest[1]) : ()) } };
    } elsif ($op eq 'unlock' || $op eq 'mark') {
        $req = { cmd => $op, name => $rest[0] };
    } elsif ($op eq 'fault') {
        my $fault = eval { $json->decode($rest[0]) };
        unless (ref $fault eq 'HASH') { print STDERR "backupd-sim-ctl: fault: expected a JSON object\n"; return 2 }
        $req = { cmd => 'fault', fault => $fault };
    } elsif ($op eq 'raw') {
        $req = eval { $json->decode($rest[0]) };
        unless (ref $req eq 'HASH') { print STDERR "backupd-sim-ctl: raw: expected a JSON object\n"; return 2 }
    } else {
        $req = { cmd => $op };
    }
    my $answer = eval { BackupdSim::Control->new($addr)->request($req) };
    unless ($answer) { print STDERR $@; return 2 }
    unless ($answer->{ok}) { print STDERR "backupd-sim-ctl: $answer->{error}\n"; return 1 }
    print $json->encode($answer->{status}), "\n";
    return 0;
}

# Run as a command, not when loaded with `require`.
exit backupd_sim_ctl_main(@ARGV) unless caller;

1;
