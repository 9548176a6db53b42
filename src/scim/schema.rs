//! RFC 7643 schema definitions: the data that drives validation, PATCH,
//! filtering, projection and the `/Schemas` discovery endpoint.

use serde_json::{Value, json};

pub const USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_URN: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// The product's own read-only user extension: the SCIM label, the licence
/// and the admin role. Computed from product state, never written by an IdP.
pub const PRODUCT_URN: &str = "urn:scim-provisioning:schemas:extension:product:1.0:User";
pub const LIST_URN: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const PATCH_URN: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const SEARCH_URN: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
pub const ERROR_URN: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub const SPC_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
pub const RESOURCE_TYPE_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
pub const SCHEMA_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    String,
    Boolean,
    Decimal,
    Integer,
    DateTime,
    Reference,
    Binary,
    Complex,
}

impl AttrType {
    pub fn as_str(self) -> &'static str {
        match self {
            AttrType::String => "string",
            AttrType::Boolean => "boolean",
            AttrType::Decimal => "decimal",
            AttrType::Integer => "integer",
            AttrType::DateTime => "dateTime",
            AttrType::Reference => "reference",
            AttrType::Binary => "binary",
            AttrType::Complex => "complex",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    ReadOnly,
    ReadWrite,
    Immutable,
    WriteOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    Always,
    Never,
    Default,
    Request,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uniqueness {
    None,
    Server,
    Global,
}

#[derive(Debug)]
pub struct AttrDef {
    pub name: &'static str,
    pub ty: AttrType,
    pub multi: bool,
    pub required: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub returned: Returned,
    pub uniqueness: Uniqueness,
    pub canonical: &'static [&'static str],
    pub reference_types: &'static [&'static str],
    pub sub: &'static [AttrDef],
    pub description: &'static str,
}

impl AttrDef {
    /// Case-insensitive lookup of a sub-attribute (RFC 7643 §2.1).
    pub fn sub_attr(&self, name: &str) -> Option<&'static AttrDef> {
        self.sub.iter().find(|a| a.name.eq_ignore_ascii_case(name))
    }
    pub fn is_complex(&self) -> bool {
        self.ty == AttrType::Complex
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "name": self.name,
            "type": self.ty.as_str(),
            "multiValued": self.multi,
            "description": self.description,
            "required": self.required,
            "caseExact": self.case_exact,
            "mutability": match self.mutability {
                Mutability::ReadOnly => "readOnly",
                Mutability::ReadWrite => "readWrite",
                Mutability::Immutable => "immutable",
                Mutability::WriteOnly => "writeOnly",
            },
            "returned": match self.returned {
                Returned::Always => "always",
                Returned::Never => "never",
                Returned::Default => "default",
                Returned::Request => "request",
            },
            "uniqueness": match self.uniqueness {
                Uniqueness::None => "none",
                Uniqueness::Server => "server",
                Uniqueness::Global => "global",
            },
        });
        if let Some(obj) = v.as_object_mut() {
            if !self.canonical.is_empty() {
                obj.insert("canonicalValues".into(), json!(self.canonical));
            }
            if self.ty == AttrType::Reference {
                obj.insert("referenceTypes".into(), json!(self.reference_types));
            }
            if !self.sub.is_empty() {
                let subs: Vec<Value> = self.sub.iter().map(AttrDef::to_json).collect();
                obj.insert("subAttributes".into(), Value::Array(subs));
            }
        }
        v
    }
}

/// A plain read-write, optional, single-valued, case-insensitive string.
const fn s(name: &'static str, description: &'static str) -> AttrDef {
    AttrDef {
        name,
        ty: AttrType::String,
        multi: false,
        required: false,
        case_exact: false,
        mutability: Mutability::ReadWrite,
        returned: Returned::Default,
        uniqueness: Uniqueness::None,
        canonical: &[],
        reference_types: &[],
        sub: &[],
        description,
    }
}

const fn typed(mut a: AttrDef, ty: AttrType) -> AttrDef {
    a.ty = ty;
    a
}
const fn boolean(name: &'static str, description: &'static str) -> AttrDef {
    typed(s(name, description), AttrType::Boolean)
}
const fn reference(
    name: &'static str,
    types: &'static [&'static str],
    description: &'static str,
) -> AttrDef {
    let mut a = typed(s(name, description), AttrType::Reference);
    a.reference_types = types;
    a
}
const fn complex(
    name: &'static str,
    sub: &'static [AttrDef],
    description: &'static str,
) -> AttrDef {
    let mut a = typed(s(name, description), AttrType::Complex);
    a.sub = sub;
    a
}
const fn multi(mut a: AttrDef) -> AttrDef {
    a.multi = true;
    a
}
const fn canonical(mut a: AttrDef, values: &'static [&'static str]) -> AttrDef {
    a.canonical = values;
    a
}
const fn read_only(mut a: AttrDef) -> AttrDef {
    a.mutability = Mutability::ReadOnly;
    a
}
const fn exact(mut a: AttrDef) -> AttrDef {
    a.case_exact = true;
    a
}

/// The sub-attributes shared by the multi-valued complex attributes of a User
/// (emails, phoneNumbers, ims, photos, ...), with the given `type` values.
macro_rules! mv_sub {
    ($value:expr, $types:expr) => {
        &[
            $value,
            s(
                "display",
                "A human-readable name, primarily used for display purposes.",
            ),
            canonical(
                s("type", "A label indicating the attribute's function."),
                $types,
            ),
            boolean(
                "primary",
                "Indicates the 'primary' or preferred attribute value.",
            ),
        ]
    };
}

const EMAIL_TYPES: &[&str] = &["work", "home", "other"];
const PHONE_TYPES: &[&str] = &["work", "home", "mobile", "fax", "pager", "other"];
const IM_TYPES: &[&str] = &["aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"];
const PHOTO_TYPES: &[&str] = &["photo", "thumbnail"];
const ADDRESS_TYPES: &[&str] = &["work", "home", "other"];

pub static USER_ATTRS: &[AttrDef] = &[
    {
        let mut a = s(
            "userName",
            "Unique identifier for the User, typically used by the user to directly authenticate to the service provider. Unique per tenant, compared case-insensitively.",
        );
        a.required = true;
        a.uniqueness = Uniqueness::Server;
        a
    },
    complex(
        "name",
        &[
            s(
                "formatted",
                "The full name, including all middle names, titles, and suffixes as appropriate, formatted for display.",
            ),
            s("familyName", "The family name of the User."),
            s("givenName", "The given name of the User."),
            s("middleName", "The middle name(s) of the User."),
            s("honorificPrefix", "The honorific prefix(es) of the User."),
            s("honorificSuffix", "The honorific suffix(es) of the User."),
        ],
        "The components of the user's real name.",
    ),
    s(
        "displayName",
        "The name of the User, suitable for display to end-users.",
    ),
    s(
        "nickName",
        "The casual way to address the user in real life.",
    ),
    reference(
        "profileUrl",
        &["external"],
        "A fully qualified URL pointing to a page representing the User's online profile.",
    ),
    s("title", "The user's title, such as \"Vice President\"."),
    s(
        "userType",
        "Used to identify the relationship between the organization and the user.",
    ),
    s(
        "preferredLanguage",
        "Indicates the User's preferred written or spoken language.",
    ),
    s(
        "locale",
        "Used to indicate the User's default location for purposes of localizing items.",
    ),
    s(
        "timezone",
        "The User's time zone in the 'Olson' time zone database format.",
    ),
    boolean(
        "active",
        "A Boolean value indicating the User's administrative status.",
    ),
    {
        let mut a = s(
            "password",
            "The User's cleartext password. Accepted on input, never stored or returned.",
        );
        a.mutability = Mutability::WriteOnly;
        a.returned = Returned::Never;
        a
    },
    multi(complex(
        "emails",
        mv_sub!(s("value", "Email address for the user."), EMAIL_TYPES),
        "Email addresses for the user.",
    )),
    multi(complex(
        "phoneNumbers",
        mv_sub!(s("value", "Phone number of the User."), PHONE_TYPES),
        "Phone numbers for the User.",
    )),
    multi(complex(
        "ims",
        mv_sub!(
            s("value", "Instant messaging address for the User."),
            IM_TYPES
        ),
        "Instant messaging addresses for the User.",
    )),
    multi(complex(
        "photos",
        mv_sub!(
            reference("value", &["external"], "URL of a photo of the User."),
            PHOTO_TYPES
        ),
        "URLs of photos of the User.",
    )),
    multi(complex(
        "addresses",
        &[
            s(
                "formatted",
                "The full mailing address, formatted for display or use with a mailing label.",
            ),
            s("streetAddress", "The full street address component."),
            s("locality", "The city or locality component."),
            s("region", "The state or region component."),
            s("postalCode", "The zip code or postal code component."),
            s("country", "The country name component."),
            canonical(
                s("type", "A label indicating the attribute's function."),
                ADDRESS_TYPES,
            ),
            boolean(
                "primary",
                "Indicates the 'primary' or preferred attribute value.",
            ),
        ],
        "A physical mailing address for this User.",
    )),
    read_only(multi(complex(
        "groups",
        &[
            read_only(s("value", "The identifier of the User's group.")),
            read_only(reference(
                "$ref",
                &["User", "Group"],
                "The URI of the corresponding 'Group' resource.",
            )),
            read_only(s("display", "A human-readable name of the group.")),
            read_only(canonical(
                s("type", "Membership type: direct or indirect."),
                &["direct", "indirect"],
            )),
        ],
        "A list of groups to which the user belongs, computed from group memberships.",
    ))),
    multi(complex(
        "entitlements",
        mv_sub!(s("value", "The value of an entitlement."), &[]),
        "A list of entitlements for the User.",
    )),
    multi(complex(
        "roles",
        mv_sub!(s("value", "The value of a role."), &[]),
        "A list of roles for the User.",
    )),
    multi(complex(
        "x509Certificates",
        mv_sub!(
            typed(
                s("value", "The value of an X.509 certificate."),
                AttrType::Binary
            ),
            &[]
        ),
        "A list of certificates issued to the User.",
    )),
];

pub static ENTERPRISE_ATTRS: &[AttrDef] = &[
    s(
        "employeeNumber",
        "Numeric or alphanumeric identifier assigned to a person.",
    ),
    s("costCenter", "Identifies the name of a cost center."),
    s("organization", "Identifies the name of an organization."),
    s("division", "Identifies the name of a division."),
    s("department", "Identifies the name of a department."),
    complex(
        "manager",
        &[
            s(
                "value",
                "The id of the SCIM resource representing the User's manager.",
            ),
            reference(
                "$ref",
                &["User"],
                "The URI of the SCIM resource representing the User's manager.",
            ),
            read_only(s("displayName", "The displayName of the User's manager.")),
        ],
        "The User's manager.",
    ),
];

pub static PRODUCT_ATTRS: &[AttrDef] = &[
    read_only(canonical(
        s(
            "provisionedBy",
            "scim: created or adopted by the identity provider; manual: added in the admin console.",
        ),
        &["scim", "manual"],
    )),
    read_only(typed(
        s("provisionedAt", "When SCIM created or adopted the user."),
        AttrType::DateTime,
    )),
    read_only(canonical(
        s(
            "licence",
            "assigned: holds a licence; waiting: in line for a free seat; none.",
        ),
        &["assigned", "waiting", "none"],
    )),
    read_only(boolean(
        "admin",
        "Holds the admin role (granted in the admin console only); an admin cannot be deactivated or deleted through SCIM.",
    )),
];

const fn immutable(mut a: AttrDef) -> AttrDef {
    a.mutability = Mutability::Immutable;
    a
}
const fn required(mut a: AttrDef) -> AttrDef {
    a.required = true;
    a
}

const MEMBER_SUBS: &[AttrDef] = &[
    required(immutable(exact(s(
        "value",
        "Identifier of the member of this Group.",
    )))),
    immutable(reference(
        "$ref",
        &["User", "Group"],
        "The URI of the member resource.",
    )),
    read_only(s("display", "A human-readable name of the member.")),
    immutable(canonical(
        s("type", "The type of the member: User or Group."),
        &["User", "Group"],
    )),
];

pub static GROUP_ATTRS: &[AttrDef] = &[
    {
        let mut a = s(
            "displayName",
            "A human-readable name for the Group. Unique per tenant, compared case-insensitively.",
        );
        a.required = true;
        a.uniqueness = Uniqueness::Server;
        a
    },
    multi(complex(
        "members",
        MEMBER_SUBS,
        "A list of members of the Group.",
    )),
];

/// Attributes every resource has (RFC 7643 §3.1); not part of any schema's
/// `/Schemas` representation, but filterable, sortable and projectable.
pub static COMMON_ATTRS: &[AttrDef] = &[
    {
        // Filterable (`schemas eq "urn:…:enterprise:2.0:User"`); computed on output.
        let mut a = read_only(multi(reference(
            "schemas",
            &["uri"],
            "The schema URNs the resource has.",
        )));
        a.returned = Returned::Always;
        a
    },
    {
        let mut a = read_only(exact(s(
            "id",
            "Unique identifier of the resource, assigned by the service provider.",
        )));
        a.returned = Returned::Always;
        a
    },
    exact(s(
        "externalId",
        "Identifier of the resource as defined by the provisioning client.",
    )),
    read_only(complex(
        "meta",
        &[
            read_only(exact(s(
                "resourceType",
                "The name of the resource type of the resource.",
            ))),
            read_only(typed(
                s(
                    "created",
                    "When the resource was added to the service provider.",
                ),
                AttrType::DateTime,
            )),
            read_only(typed(
                s("lastModified", "When the resource was last modified."),
                AttrType::DateTime,
            )),
            read_only(reference("location", &["uri"], "The URI of the resource.")),
            read_only(exact(s(
                "version",
                "The version (weak ETag) of the resource.",
            ))),
        ],
        "Resource metadata.",
    )),
];

#[derive(Debug)]
pub struct SchemaDef {
    pub id: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub attributes: &'static [AttrDef],
}

impl SchemaDef {
    pub fn attr(&self, name: &str) -> Option<&'static AttrDef> {
        self.attributes
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }
    pub fn to_json(&self, base_url: &str) -> Value {
        json!({
            "schemas": [SCHEMA_URN],
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "attributes": self.attributes.iter().map(AttrDef::to_json).collect::<Vec<_>>(),
            "meta": { "resourceType": "Schema", "location": format!("{base_url}/Schemas/{}", self.id) },
        })
    }
}

pub static USER_SCHEMA: SchemaDef = SchemaDef {
    id: USER_URN,
    name: "User",
    description: "User Account",
    attributes: USER_ATTRS,
};
pub static ENTERPRISE_SCHEMA: SchemaDef = SchemaDef {
    id: ENTERPRISE_URN,
    name: "EnterpriseUser",
    description: "Enterprise User",
    attributes: ENTERPRISE_ATTRS,
};
pub static GROUP_SCHEMA: SchemaDef = SchemaDef {
    id: GROUP_URN,
    name: "Group",
    description: "Group",
    attributes: GROUP_ATTRS,
};

pub static PRODUCT_SCHEMA: SchemaDef = SchemaDef {
    id: PRODUCT_URN,
    name: "ProductUser",
    description: "Provisioning label, licence and admin role of a user (read-only)",
    attributes: PRODUCT_ATTRS,
};

static USER_EXTENSIONS: &[&SchemaDef] = &[&ENTERPRISE_SCHEMA, &PRODUCT_SCHEMA];

pub static ALL_SCHEMAS: &[&SchemaDef] = &[
    &USER_SCHEMA,
    &GROUP_SCHEMA,
    &ENTERPRISE_SCHEMA,
    &PRODUCT_SCHEMA,
];

/// The two resource types this service provider serves.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Kind {
    User,
    Group,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::User => "User",
            Kind::Group => "Group",
        }
    }
    pub fn endpoint(self) -> &'static str {
        match self {
            Kind::User => "Users",
            Kind::Group => "Groups",
        }
    }
    pub fn schema(self) -> &'static SchemaDef {
        match self {
            Kind::User => &USER_SCHEMA,
            Kind::Group => &GROUP_SCHEMA,
        }
    }
    pub fn extensions(self) -> &'static [&'static SchemaDef] {
        match self {
            Kind::User => USER_EXTENSIONS,
            Kind::Group => &[],
        }
    }
    pub fn extension(self, urn: &str) -> Option<&'static SchemaDef> {
        self.extensions()
            .iter()
            .copied()
            .find(|s| s.id.eq_ignore_ascii_case(urn))
    }
    pub fn from_name(name: &str) -> Option<Kind> {
        [Kind::User, Kind::Group]
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(name))
    }

    pub fn resource_type_json(self, base_url: &str) -> Value {
        let ext: Vec<Value> = self
            .extensions()
            .iter()
            .map(|s| json!({"schema": s.id, "required": false}))
            .collect();
        let mut v = json!({
            "schemas": [RESOURCE_TYPE_URN],
            "id": self.name(),
            "name": self.name(),
            "endpoint": format!("/{}", self.endpoint()),
            "description": match self { Kind::User => "User Account", Kind::Group => "Group" },
            "schema": self.schema().id,
            "meta": { "resourceType": "ResourceType", "location": format!("{base_url}/ResourceTypes/{}", self.name()) },
        });
        if !ext.is_empty()
            && let Some(obj) = v.as_object_mut()
        {
            obj.insert("schemaExtensions".into(), Value::Array(ext));
        }
        v
    }
}

/// A resolved attribute: where it lives in a resource document and its definition.
#[derive(Debug, Clone, Copy)]
pub struct Resolved {
    /// `Some(urn)` for an extension attribute, stored under that URN key.
    pub extension: Option<&'static str>,
    pub attr: &'static AttrDef,
    pub sub: Option<&'static AttrDef>,
}

impl Resolved {
    /// The definition of the leaf that a comparison applies to.
    pub fn leaf(&self) -> &'static AttrDef {
        self.sub.unwrap_or(self.attr)
    }
}

/// Finds `name` (core, common, or `urn:...:attr` extension form already split
/// into `urn`) for `kind`, case-insensitively.
pub fn resolve(kind: Kind, urn: Option<&str>, name: &str, sub: Option<&str>) -> Option<Resolved> {
    let (extension, attr) = match urn {
        None => {
            let a = kind.schema().attr(name).or_else(|| {
                COMMON_ATTRS
                    .iter()
                    .find(|a| a.name.eq_ignore_ascii_case(name))
            })?;
            (None, a)
        }
        Some(u) if u.eq_ignore_ascii_case(kind.schema().id) => (None, kind.schema().attr(name)?),
        Some(u) => {
            let ext = kind.extension(u)?;
            (Some(ext.id), ext.attr(name)?)
        }
    };
    let sub = match sub {
        None => None,
        Some(s) => Some(attr.sub_attr(s)?),
    };
    Some(Resolved {
        extension,
        attr,
        sub,
    })
}
