//! Who may do what: the one permission table (mirrored in README.md). Reads are open to
//! every signed-in user; writes need one of the roles listed here. Admins may do all.

use super::Role;
use super::Role::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    ManageUsers,
    ManageCamps,
    UpdateAttendance,
    RegisterPatients,
    RecordVitals,
    ManageDoctors,
    AssignDoctor,
    Consult,
    UpdateQueue,
    Prescribe,
    Dispense,
    ManageMedicines,
    ManageWebhooks,
    ReadAccessAudit,
}

impl Permission {
    /// The roles that hold this permission (admin holds all).
    pub fn roles(self) -> &'static [Role] {
        match self {
            Permission::ManageUsers | Permission::ManageWebhooks => &[Admin],
            Permission::ReadAccessAudit => &[Admin],
            Permission::ManageCamps | Permission::ManageDoctors => &[Admin],
            Permission::UpdateAttendance => &[Admin, Nurse, Volunteer],
            Permission::RegisterPatients => &[Admin, Doctor, Nurse, Volunteer],
            Permission::RecordVitals => &[Admin, Doctor, Nurse, Volunteer],
            Permission::AssignDoctor => &[Admin, Nurse, Volunteer],
            Permission::Consult => &[Admin, Doctor],
            Permission::UpdateQueue => &[Admin, Doctor, Nurse],
            Permission::Prescribe => &[Admin, Doctor],
            Permission::Dispense => &[Admin, Pharmacist],
            Permission::ManageMedicines => &[Admin, Pharmacist],
        }
    }

    pub fn allows(self, role: Role) -> bool {
        self.roles().contains(&role)
    }
}
