"""A real OpenLDAP server (Debian's slapd) for the tests: a throwaway config and mdb database in a
tmp folder, a free port for ldap:// (StartTLS) and one for ldaps://, a self-signed certificate made
with the openssl CLI, and the people and groups below loaded with ldapadd.

    with LdapServer(tmp_path) as ldap:
        ldap.url          # ldap://127.0.0.1:PORT (StartTLS offered)
        ldap.ldaps_url    # ldaps://127.0.0.1:PORT
        ldap.ca_file      # the certificate the directory presents
        ldap.modify(LDIF) # ldapmodify as the directory's admin

Directory (dc=example,dc=org):
    ou=people: ada (password ada-secret), bob (bob-secret), carol (carol-secret, disabled with
               ppolicy's pwdAccountLockedTime), dave (dave-secret), "star*" (star-secret)
    ou=groups: lab-admins {ada}; lab-ops {group lab-core}; lab-core {dave} (nested); lab {ada, bob}
    cn=reader: the service account (reader-secret)
"""

from __future__ import annotations

import ctypes
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

SLAPD = "/usr/sbin/slapd"
BASE = "dc=example,dc=org"
ADMIN_DN = f"cn=admin,{BASE}"
ADMIN_PASSWORD = "admin-secret"
READER_DN = f"cn=reader,{BASE}"
READER_PASSWORD = "reader-secret"
PEOPLE = f"ou=people,{BASE}"
GROUPS = f"ou=groups,{BASE}"
PASSWORDS = {"ada": "ada-secret", "bob": "bob-secret", "carol": "carol-secret", "dave": "dave-secret"}

CONFIG = """\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload ppolicy
pidfile {dir}/slapd.pid
TLSCertificateFile {dir}/cert.pem
TLSCertificateKeyFile {dir}/key.pem
database mdb
maxsize 10485760
suffix "{base}"
rootdn "{admin}"
rootpw {admin_password}
directory {dir}/db
overlay ppolicy
access to attrs=userPassword by self =xw by anonymous auth by * none
access to * by * read
"""


def _person(uid: str, name: str, extra: str = "") -> str:
    return (
        f"dn: uid={uid},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {name}\nsn: {name.split()[-1]}\n"
        f"displayName: {name}\nuserPassword: {PASSWORDS.get(uid, 'star-secret')}\n{extra}\n"
    )


def _group(cn: str, *members: str) -> str:
    lines = "".join(f"member: {m}\n" for m in members)
    return f"dn: cn={cn},{GROUPS}\nobjectClass: groupOfNames\ncn: {cn}\n{lines}\n"


DATA = (
    f"dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n\n"
    f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n\n"
    f"dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups\n\n"
    f"dn: {READER_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: reader\n"
    f"userPassword: {READER_PASSWORD}\n\n"
    + _person("ada", "Ada Lovelace")
    + _person("bob", "Bob Builder")
    + _person("carol", "Carol Locked", "pwdAccountLockedTime: 000001010000Z\n")
    + _person("dave", "Dave Nested")
    + f"dn: uid=star\\2A,{PEOPLE}\nobjectClass: inetOrgPerson\nuid: star*\ncn: Star\nsn: Star\n"
    + "userPassword: star-secret\n\n"
    + _group("lab-admins", f"uid=ada,{PEOPLE}")
    + _group("lab-core", f"uid=dave,{PEOPLE}")
    + _group("lab-ops", f"cn=lab-core,{GROUPS}")
    + _group("lab", f"uid=ada,{PEOPLE}", f"uid=bob,{PEOPLE}")
)


def available() -> str | None:
    """Why the directory cannot be run here (None: it can)."""
    for tool in (SLAPD, "ldapadd", "ldapmodify", "openssl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian: apt-get install slapd ldap-utils openssl)"
    return None


def _die_with_parent() -> None:
    """In the child: a test run killed outright (SIGKILL, a CI timeout) takes its slapd along."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LdapServer:
    def __init__(self, folder: Path) -> None:
        self.dir = folder / "slapd"
        self.port = _free_port()
        self.ldaps_port = _free_port()
        self.url = f"ldap://127.0.0.1:{self.port}"
        self.ldaps_url = f"ldaps://127.0.0.1:{self.ldaps_port}"
        self.ca_file = self.dir / "cert.pem"
        self.log_path = self.dir / "slapd.log"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LdapServer:
        (self.dir / "db").mkdir(parents=True)
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
            + ["-keyout", str(self.dir / "key.pem"), "-out", str(self.ca_file)]
            + ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
            check=True,
            capture_output=True,
        )
        (self.dir / "slapd.conf").write_text(
            CONFIG.format(dir=self.dir, base=BASE, admin=ADMIN_DN, admin_password=ADMIN_PASSWORD)
        )
        self.start()
        self.ldap("ldapadd", DATA)
        return self

    def start(self) -> None:
        """Start slapd (again, after stop: same database) and wait until it answers."""
        log = self.log_path.open("a")
        self.process = subprocess.Popen(
            [SLAPD, "-f", str(self.dir / "slapd.conf"), "-h", f"{self.url}/ {self.ldaps_url}/", "-d", "stats"],
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"slapd exited with {self.process.returncode}:\n{self.output()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"slapd did not listen within 30 s:\n{self.output()}")

    def stop(self) -> None:
        """Kill slapd (the directory goes down); start() brings it back."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)
        self.process = None

    def ldap(self, tool: str, ldif: str) -> None:
        """ldapadd / ldapmodify / ldapdelete as the directory's admin."""
        subprocess.run(
            [tool, "-x", "-H", self.url, "-D", ADMIN_DN, "-w", ADMIN_PASSWORD],
            input=ldif.encode(),
            check=True,
            capture_output=True,
            timeout=30,
        )

    def modify(self, ldif: str) -> None:
        self.ldap("ldapmodify", ldif)

    def membership(self, group: str, change: str, uid: str) -> None:
        """Add ("add") or remove ("delete") the user `uid` as a member of `group`."""
        self.modify(f"dn: cn={group},{GROUPS}\nchangetype: modify\n{change}: member\nmember: uid={uid},{PEOPLE}\n")

    def delete(self, dn: str) -> None:
        self.ldap("ldapdelete", dn + "\n")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def settings(self, **extra: object) -> dict[str, object]:
        """mieruka settings for this directory: StartTLS checked against its certificate, the
        service account, and lab-admins -> admin, lab-ops -> operator, lab -> viewer."""
        return {
            "ldap_url": self.url,
            "ldap_starttls": True,
            "ldap_ca_file": str(self.ca_file),
            "ldap_bind_dn": READER_DN,
            "ldap_bind_password": READER_PASSWORD,
            "ldap_user_base": PEOPLE,
            "ldap_group_base": GROUPS,
            "ldap_roles": f'{{"cn=lab-admins,{GROUPS}": "admin", "lab-ops": "operator", "lab": "viewer"}}',
            "ldap_timeout": 30,  # a loaded machine can stall a TLS handshake for seconds; outages refuse at once
            **extra,
        }
