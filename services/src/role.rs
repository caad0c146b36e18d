//! The process roles of the shop: what each is called, which port it listens on by default, which
//! variable names its URL, which entity type's commands it serves, and which projection workers
//! it runs. docker-compose.yml, `up`
//! and `serve` all start roles from this one list.

use ordershop_domain::EntityKind;
use ordershop_operations::ProjectionName;
use std::fmt;
use std::str::FromStr;

/// The process roles of the shop. Each runs as its own process (or task) and owns one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Gateway,
    CustomerService,
    ProductService,
    InventoryService,
    OrderService,
    BillingService,
    CrmService,
    MsgService,
    EntityCache,
}

impl Role {
    pub const ALL: [Role; 9] = [
        Role::Gateway,
        Role::CustomerService,
        Role::ProductService,
        Role::InventoryService,
        Role::OrderService,
        Role::BillingService,
        Role::CrmService,
        Role::MsgService,
        Role::EntityCache,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Gateway => "gateway",
            Role::CustomerService => "customer-service",
            Role::ProductService => "product-service",
            Role::InventoryService => "inventory-service",
            Role::OrderService => "order-service",
            Role::BillingService => "billing-service",
            Role::CrmService => "crm-service",
            Role::MsgService => "msg-service",
            Role::EntityCache => "entity-cache",
        }
    }

    /// The port the role listens on unless `ORDERSHOP_LISTEN` says otherwise.
    pub const fn default_port(self) -> u16 {
        match self {
            Role::Gateway => 5000,
            Role::CustomerService => 5001,
            Role::ProductService => 5002,
            Role::InventoryService => 5003,
            Role::OrderService => 5004,
            Role::BillingService => 5005,
            Role::MsgService => 5006,
            Role::CrmService => 5007,
            Role::EntityCache => 5008,
        }
    }

    /// The environment variable that holds this role's URL, for the roles other roles call.
    pub const fn url_var(self) -> Option<&'static str> {
        match self {
            Role::Gateway => None,
            Role::CustomerService => Some("CUSTOMER_SERVICE_URL"),
            Role::ProductService => Some("PRODUCT_SERVICE_URL"),
            Role::InventoryService => Some("INVENTORY_SERVICE_URL"),
            Role::OrderService => Some("ORDER_SERVICE_URL"),
            Role::BillingService => Some("BILLING_SERVICE_URL"),
            Role::MsgService => Some("MSG_SERVICE_URL"),
            Role::CrmService => Some("CRM_SERVICE_URL"),
            Role::EntityCache => Some("ENTITY_CACHE_URL"),
        }
    }

    /// The domain service that owns the commands of an entity type.
    pub const fn owner_of(kind: EntityKind) -> Role {
        match kind {
            EntityKind::Customer => Role::CustomerService,
            EntityKind::Product => Role::ProductService,
            EntityKind::Inventory => Role::InventoryService,
            EntityKind::Order => Role::OrderService,
            EntityKind::Billing => Role::BillingService,
        }
    }

    /// The entity type whose commands this role serves, if it is a domain service.
    pub const fn commands(self) -> Option<EntityKind> {
        match self {
            Role::CustomerService => Some(EntityKind::Customer),
            Role::ProductService => Some(EntityKind::Product),
            Role::InventoryService => Some(EntityKind::Inventory),
            Role::OrderService => Some(EntityKind::Order),
            Role::BillingService => Some(EntityKind::Billing),
            _ => None,
        }
    }

    /// The consumer-group workers the role runs besides its HTTP server.
    pub const fn workers(self) -> &'static [ProjectionName] {
        match self {
            Role::EntityCache => &[ProjectionName::EntityCache],
            Role::CrmService => &[ProjectionName::Crm, ProjectionName::CrmMailer],
            Role::MsgService => &[ProjectionName::MsgDelivery],
            _ => &[],
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
                format!("unknown role `{s}` (expected one of {})", names.join(", "))
            })
    }
}
