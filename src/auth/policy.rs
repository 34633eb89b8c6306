//! The password policy: refuse the obvious. Used by the API (`POST /users`,
//! `PATCH /users/{id}`), for `EHRS_ADMIN_PASSWORD` at start and by `ehrs user`.
//!
//! Length alone let `password`, `12345678`, eight spaces and the username itself through.
//! The rules below are the ones NIST SP 800-63B asks of a verifier: a minimum length, no
//! value from a list of commonly used passwords, nothing derived from the user's name;
//! no composition rules (they push people to `Password1!`).

/// Shortest and longest password accepted, in characters.
pub const MIN_LEN: usize = 8;
pub const MAX_LEN: usize = 256;

/// Why `password` is refused for the user `username`, or `None` when it is acceptable.
pub fn problem(password: &str, username: &str) -> Option<&'static str> {
    let length = password.chars().count();
    if length < MIN_LEN {
        return Some("must be at least 8 characters");
    }
    if length > MAX_LEN {
        return Some("must be at most 256 characters");
    }
    if password.trim().is_empty() {
        return Some("must not be only whitespace");
    }
    let lowered = password.to_lowercase();
    let name = username.trim().to_lowercase();
    if name.chars().count() >= 3 && lowered.contains(&name) {
        return Some("must not contain the username");
    }
    let mut chars = lowered.chars();
    if let Some(first) = chars.next()
        && chars.all(|c| c == first)
    {
        return Some("must not be one character repeated");
    }
    if COMMON.contains(&lowered.trim()) {
        return Some("is one of the most commonly used passwords");
    }
    None
}

/// Commonly used passwords of 8 characters or more (lower case), from the public
/// breach-derived top lists, plus a few a medical camp would reach for.
const COMMON: &[&str] = &[
    "password",
    "password1",
    "password12",
    "password123",
    "password1234",
    "passw0rd",
    "p@ssw0rd",
    "p@ssword",
    "pa$$word",
    "password!",
    "mypassword",
    "newpassword",
    "12345678",
    "123456789",
    "1234567890",
    "12345678910",
    "0123456789",
    "87654321",
    "987654321",
    "9876543210",
    "11111111",
    "111111111",
    "00000000",
    "000000000",
    "12341234",
    "12121212",
    "11223344",
    "13131313",
    "123123123",
    "123321123",
    "88888888",
    "99999999",
    "66666666",
    "123654789",
    "147258369",
    "159753456",
    "741852963",
    "789456123",
    "456789123",
    "147852369",
    "1q2w3e4r",
    "1q2w3e4r5t",
    "1q2w3e4r5t6y",
    "q1w2e3r4",
    "q1w2e3r4t5",
    "1qaz2wsx",
    "1qaz2wsx3edc",
    "zaq12wsx",
    "zaq1zaq1",
    "qazwsxedc",
    "qwertyui",
    "qwertyuiop",
    "qwerty123",
    "qwerty12",
    "qwer1234",
    "1234qwer",
    "asdfghjk",
    "asdfghjkl",
    "asdf1234",
    "zxcvbnm1",
    "abcd1234",
    "abc12345",
    "abcdefgh",
    "abcdefg1",
    "a1234567",
    "a12345678",
    "aa123456",
    "1234abcd",
    "12345abc",
    "iloveyou",
    "iloveyou1",
    "iloveyou2",
    "sunshine",
    "sunshine1",
    "princess",
    "princess1",
    "football",
    "football1",
    "baseball",
    "superman",
    "batman123",
    "trustno1",
    "welcome1",
    "welcome123",
    "welcome@123",
    "letmein1",
    "letmein123",
    "starwars",
    "whatever",
    "computer",
    "internet",
    "michelle",
    "jennifer",
    "jordan23",
    "charlie1",
    "shadow12",
    "master123",
    "monkey123",
    "dragon123",
    "chocolate",
    "butterfly",
    "liverpool",
    "manchester",
    "pokemon1",
    "minecraft",
    "changeme",
    "changeme1",
    "changeme123",
    "default1",
    "secret123",
    "hello123",
    "helloworld",
    "administrator",
    "admin123",
    "admin1234",
    "admin@123",
    "root1234",
    "test1234",
    "testtest",
    "guest123",
    "login123",
    "access14",
    "mustang1",
    "michael1",
    "whatever1",
    "5201314520",
    "woaini1314",
    "india123",
    "india@123",
    "bismillah",
    "pakistan",
    "bangladesh",
    "hospital",
    "doctor123",
    "nurse123",
    "medical1",
    "health123",
    "patient1",
    "clinic123",
    "camp1234",
    "ehrs1234",
];

#[cfg(test)]
mod tests {
    use super::problem;

    #[test]
    fn refuses_the_obvious_and_accepts_the_rest() {
        for (password, username) in [
            ("a", "admin"),
            ("short", "nurse"),
            ("password", "nurse"),
            ("Password", "nurse"),
            ("12345678", "nurse"),
            ("        ", "nurse"),
            ("\t \t \t \t ", "nurse"),
            ("nurse_user", "nurse_user"),
            ("my-ADMIN-pass", "admin"),
            ("zzzzzzzzzz", "nurse"),
            (&"x".repeat(257), "nurse"),
        ] {
            assert!(
                problem(password, username).is_some(),
                "{password:?} for {username:?}"
            );
        }
        for (password, username) in [
            ("correct-horse-battery", "nurse_user"),
            ("long-enough-1", "dr.rao"),
            ("bench-password-1", "admin"),
            ("чай с лимоном", "nurse"),
        ] {
            assert_eq!(problem(password, username), None, "{password:?}");
        }
    }

    #[test]
    fn the_common_list_is_lower_case_and_long_enough_to_matter() {
        for entry in super::COMMON {
            assert_eq!(*entry, entry.to_lowercase());
            assert!(entry.chars().count() >= super::MIN_LEN, "{entry}");
        }
    }
}
